"""Image.Batch: turn a sheet of image descriptions into PNGs, one folder per context, synced to S3.

The Snakemake rules under ``workflow/rules`` stay thin and call into these modules:

- ``sheet``     reads and validates the input CSV (the descriptions stage)
- ``slug``      maps a context to its folder name
- ``specs``     turns rows into per-image requests, in files named by their content
- ``providers`` image backends behind one interface (``openai``, ``offline``)
- ``imaging``   checks and normalises image bytes to PNG
- ``generate``  makes one image: provider call, checks, atomic PNG + sidecar
- ``sync``      uploads the images to S3 (or a local folder) and writes the markers
- ``settings``  resolves config + environment into one object
"""
