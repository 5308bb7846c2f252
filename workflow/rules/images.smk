# An image's request file is named by its content (image_batch.descriptions.specs): planning only
# names it. For an image that exists, this rule writes it, in a real run, when it is missing (a
# changed request), and Snakemake then makes the image again; an image not made yet has no input,
# and its own job writes the file first (PLAN.request_of, PLAN.job_request). A dry run writes nothing.
rule write_request:
    output:
        "results/specs/{folder}/{image_id}.{digest}.json",
    log:
        "results/logs/requests/{folder}/{image_id}.{digest}.log",  # empty (Snakemake makes it)
    localrule: True
    run:
        key = (wildcards.folder, wildcards.image_id)
        specs.write_request(PLAN.spec_of(*key), output[0], PLAN.requests.superseded.get(key, ()), log[0])


# An image whose PNG is there without its sidecar: the marker that makes its job due (the sidecar
# is no declared output: see image_batch.descriptions.specs.remake_marker). A target of the run
# (PLAN.due), written by a real run only.
rule write_remake_marker:
    output:
        "results/specs/_remake/{folder}/{image_id}.{digest}.json",
    log:
        "results/logs/requests/_remake/{folder}/{image_id}.{digest}.log",  # empty (Snakemake makes it)
    localrule: True
    run:
        PLAN.write_remake_marker(wildcards.folder, wildcards.image_id, output[0], log[0])


# An image job's inputs: its request file when the image is stale, the row's reference pictures
# and mask (replacing one makes exactly its rows stale), and the marker of a lost sidecar, from one
# function that Snakemake calls for every job; none, and no function, when no image has an input
# (a fresh or unchanged plan: PLAN.image_jobs_take_inputs).
IMAGE_INPUTS = (
    [unpack(input_function(lambda wildcards: PLAN.image_inputs(wildcards.folder, wildcards.image_id)))]
    if PLAN.image_jobs_take_inputs
    else []
)
# The image job's outputs: its PNG (in the report's gallery) and, with a storage provider only (so
# that Snakemake stores it), the sidecar the job writes beside it: a second output of every image
# job costs Snakemake a sixth of its own work for this workflow (benchmarks/shape.py).
IMAGE_OUTPUTS = {
    "png": report(
        "results/images/{folder}/{image_id}.png",
        caption="../report/image.rst",
        category="Images",
        subcategory=gallery.context,
        labels=gallery.labels,
    ),
    **({"sidecar": "results/images/{folder}/{image_id}.json"} if STORAGE else {}),
}


rule generate_image:
    input:
        *IMAGE_INPUTS,
    output:
        **IMAGE_OUTPUTS,
    log:
        "results/logs/images/{folder}/{image_id}.log",
    threads: 0  # waits on the API; the `api` resource, not --cores, bounds concurrency
    resources:
        api=1,
    run:
        make_image(wildcards, input, output, log[0])
