"""Signal, not noise: Snakemake messages that say nothing useful for this workflow are dropped,
and a failed image takes one line.

On the console (not in Snakemake's log file, ``.snakemake/log/``, which keeps everything) a run shows
Image.Batch's own lines (the banner, the plan, the estimate, progress, one line per failure, the
summary) and Snakemake's warnings and errors, but none of its job blocks, progress counters and
scheduler chatter: at 100 images those are over a thousand lines. ``snakemake --verbose`` shows
them all again.

The workflow profile turns per-job metadata off (``drop-metadata``: staleness comes from the request
files, and writing metadata for 10,000 jobs costs minutes). Snakemake then says so for every output
file in ``--report`` ("Missing metadata for file ... non critical warning", twice per image) and at
the end of every dry run ("N jobs have missing provenance/metadata"). Those lines are filtered out.
"""

import logging
import re

NOISE = ("Missing metadata for file", "provenance/metadata so that it in part")


NOTHING_TO_DO = "Nothing to be done"
heard = set()  # what Snakemake said that the workflow's last words depend on


# A failed image is one line: its reason (the end-of-run summary lists them all again), not
# Snakemake's exception block with traceback lines and then its job error block.
IMAGE_FAILURES = ("WorkerError in file", "ImageFailed in file", "NotStarted in file")
SYNC_FAILURE = "SyncError in file"
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

# What the console does not show unless --verbose: Snakemake's per-job blocks and counters ...
CONSOLE_EVENTS = (
    "run_info",  # the job stats table: the plan's own line says how many images are to make
    "workflow_started",
    "shellcmd",
    "job_info",
    "job_started",
    "job_finished",
    "group_info",
    "resources_info",
    "progress",
)
# ... and its scheduler's chatter
CONSOLE_CHATTER = re.compile(
    r"^(Building DAG of jobs|Using shell: |Provided cores: |Rules claiming more threads|Provided resources: "
    r"|Select jobs to execute|Execute \d+ jobs|Assuming unrestricted shared filesystem usage|Elapsed time: "
    r"|Job stats:|Waiting for more resources|Ready jobs|Removing output files of failed job generate_image"
    r"|Trying to restart job|Storing output in storage|Retrieving input from storage|Reasons:"
    r"|Config file .* is extended by additional config"
    # --report: one "Adding cake-01.png (14.31 KB)." per image (10,000 lines for 10,000 images)
    r"|Adding .+ \([\d.]+ \w+\)\.$)"
)


def _one_line(message):
    """The reason line of Snakemake's exception block for a failed image (or the sync)."""
    lines = [line for line in message.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith(IMAGE_FAILURES) and index + 1 < len(lines):
            return f"Image.Batch: FAILED {lines[index + 1].strip()}"
        if line.startswith(SYNC_FAILURE) and index + 1 < len(lines):
            return f"Image.Batch: SYNC FAILED: {lines[index + 1].strip()}"
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
        if "RuleException" in message or message.startswith((*IMAGE_FAILURES, SYNC_FAILURE)):
            line = _one_line(message)
            if line:
                if NOT_STARTED in line:
                    return False
                record.msg, record.args, record.exc_info, record.exc_text = line, (), None, None
        if _stopping and any(part in message for part in STOPPING_NOISE):
            return False
        return not any(part in message for part in NOISE)


class _Console(logging.Filter):
    """The console's filter (not the log file's): no job blocks, counters or scheduler chatter."""

    def filter(self, record):
        if str(getattr(record, "event", "") or "") in CONSOLE_EVENTS:
            return False
        try:
            message = record.getMessage()
        except Exception:
            return True
        if getattr(record, "rule_name", None) == "sync" and message.startswith("Error in rule"):
            return False  # the sync's job error block: its one line (SYNC FAILED) says it all
        return not CONSOLE_CHATTER.match(message.lstrip())


def _console_handlers(logger):
    """Snakemake's console handler(s) (never its log file's), unless it was asked to be verbose."""
    found = []
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
            continue
        if any(getattr(f, "verbose", False) for f in handler.filters):
            return []  # --verbose: everything, as Snakemake prints it
        found.append(handler)
    return found


_installed = []


def install():
    """Filter Snakemake's logger (once per process), and quieten its console."""
    if _installed:
        return
    noise = _Filter()
    for name in ("snakemake.logging", "snakemake"):
        logging.getLogger(name).addFilter(noise)
    console = _Console()
    for name in ("snakemake.logging", "snakemake"):
        for handler in _console_handlers(logging.getLogger(name)):
            handler.addFilter(console)
    _installed.append(noise)
