"""Signal, not noise: Snakemake messages that say nothing useful for this workflow are dropped.

The workflow profile turns per-job metadata off (``drop-metadata``: staleness comes from the request
files, and writing metadata for 10,000 jobs costs minutes). Snakemake then says so for every output
file in ``--report`` ("Missing metadata for file ... non critical warning", twice per image) and at
the end of every dry run ("N jobs have missing provenance/metadata"). Those lines are filtered out.
"""

import logging

NOISE = ("Missing metadata for file", "provenance/metadata so that it in part")


class _Filter(logging.Filter):
    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            return True
        return not any(part in message for part in NOISE)


_installed = []


def install():
    """Filter Snakemake's logger (once per process)."""
    if _installed:
        return
    noise = _Filter()
    for name in ("snakemake.logging", "snakemake"):
        logging.getLogger(name).addFilter(noise)
    _installed.append(noise)
