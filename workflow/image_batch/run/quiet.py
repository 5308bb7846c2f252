"""Signal, not noise: Snakemake messages that say nothing useful for this workflow are dropped,
and a failed image takes one line.

The workflow profile turns per-job metadata off (``drop-metadata``: staleness comes from the request
files, and writing metadata for 10,000 jobs costs minutes). Snakemake then says so for every output
file in ``--report`` ("Missing metadata for file ... non critical warning", twice per image) and at
the end of every dry run ("N jobs have missing provenance/metadata"). Those lines are filtered out.
"""

import logging

NOISE = ("Missing metadata for file", "provenance/metadata so that it in part")


NOTHING_TO_DO = "Nothing to be done"
heard = set()  # what Snakemake said that the workflow's last words depend on


# A failed image is one line: its reason (the end-of-run summary lists them all again), not
# Snakemake's exception block with traceback lines and then its job error block.
IMAGE_FAILURES = ("WorkerError in file", "ImageFailed in file", "NotStarted in file")
IMAGE_RULE = "generate_image"
# An image whose call a stopping run did not make is no failure (the "stopping" line and the summary
# say it); Snakemake's note that it waits for the running jobs comes with every job that ends.
NOT_STARTED = ": not started: "
# Snakemake's lines as it stops gracefully: that it waits for the running jobs (with each job that
# ends), that it shuts down, and that "at least one job did not complete" (none failed for it).
STOPPING_NOISE = (
    "Will exit after finishing currently running jobs",
    "Shutting down, this might take some time",
    "At least one job did not complete successfully",
)


def _one_line(message):
    """The reason line of Snakemake's exception block for a failed image."""
    lines = [line for line in message.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith(IMAGE_FAILURES) and index + 1 < len(lines):
            return f"Image.Batch: FAILED {lines[index + 1].strip()}"
    return None


_silenced = []
_stopping = []


def stopping():
    """The run is stopping on a signal: its own line and the summary say so; Snakemake's lines about it go."""
    _stopping.append(True)


def silence():
    """Drop every Snakemake message from now on (a run that is abandoned says why in its own line)."""
    _silenced.append(True)


class _Filter(logging.Filter):
    def filter(self, record):
        if _silenced:
            return False
        try:
            message = record.getMessage()
        except Exception:
            return True
        if message.startswith(NOTHING_TO_DO):
            heard.add(NOTHING_TO_DO)  # Snakemake found no job to run (and will not call onstart)
        if getattr(record, "rule_name", None) == IMAGE_RULE and message.startswith("Error in rule"):
            return False  # the job error block of a failed image: its one line says it all
        if "RuleException" in message or message.startswith(IMAGE_FAILURES):
            line = _one_line(message)
            if line:
                if NOT_STARTED in line:
                    return False
                record.msg, record.args, record.exc_info, record.exc_text = line, (), None, None
        if _stopping and any(part in message for part in STOPPING_NOISE):
            return False
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
