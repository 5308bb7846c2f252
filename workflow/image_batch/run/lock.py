"""One live run per folder, and recovery after a crash.

The main Snakemake process holds an exclusive flock on ``.snakemake/image-batch.lock`` for its
whole life; the kernel drops it when the process dies, even by ``kill -9``.  So when a new run gets
the flock, no other run is alive, and whatever Snakemake left in ``.snakemake/locks`` (and any
half-written ``.*.part`` file under results/) is stale and can go.  When it does not get it,
another run is alive: a real run is refused with a clear message; a dry run just looks.
"""

import datetime
import fcntl
import os
import shutil
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import remove_stale_parts

LOCK_FILE = Path(".snakemake/image-batch.lock")
SNAKEMAKE_LOCKS = Path(".snakemake/locks")
_held = []  # keeps the lock's file object (and so the flock) alive for the process
ALIVE = "another run is alive"


_PASSIVE = (
    "dryrun",
    "lint",
    "list_rules",
    "list_target_rules",
    "list_changes",
    "list_untracked",
    "summary",
    "detailed_summary",
    "dag",
    "rulegraph",
    "filegraph",
    "d3dag",
    "unlock",
    "cleanup_metadata",
    "cleanup_shadow",
    "delete_all_output",
    "delete_temp_output",
    "report",
    "archive",
    "export_cwl",
    "containerize",
    "list_conda_envs",
)


def looks_like_dry_run(argv):
    """True for invocations that make nothing (dry run, lint, summaries, graphs, unlock, report),
    read with Snakemake's own argument parser (so ``-Rsync`` is not mistaken for ``-n``)."""
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(argv[1:])
    except BaseException:  # an unparseable command line: let Snakemake itself complain
        return False
    return any(getattr(args, name, None) not in (None, False, [], "") for name in _PASSIVE)


def acquire(dry_run=False, store_root=None):
    """Take the run lock (or, for a dry run, only check it).  Returns (ALIVE or None, note for the log)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    handle = open(LOCK_FILE, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        if dry_run:
            return (
                ALIVE,
                f"note: a run is in progress in this folder ({holder}); requests it is working on are not rewritten",
            )
        raise UserError(
            f"another Image.Batch run is working in this folder ({holder}). Wait for it to finish "
            "or stop it, then run again. (Nothing was changed.)"
        )
    if dry_run:
        handle.close()
        return None, ""
    note = ""
    if SNAKEMAKE_LOCKS.is_dir() and any(SNAKEMAKE_LOCKS.iterdir()):
        shutil.rmtree(SNAKEMAKE_LOCKS)
        note = "removed a stale Snakemake lock left by a run that is no longer alive"
    remove_stale_parts("results", only_dead_writers=False)  # no other run here is alive
    if store_root:
        # the store may be shared with runs in other folders (or containers, whose pids we cannot
        # see): only temp files of dead writers that are also old enough to be abandoned
        remove_stale_parts(store_root, min_age=600)
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()}, started {started}\n")
    handle.flush()
    _held.append(handle)
    return None, note
