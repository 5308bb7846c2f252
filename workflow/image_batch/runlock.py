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

from .errors import UserError
from .fileio import remove_stale_parts

LOCK_FILE = Path(".snakemake/image-batch.lock")
SNAKEMAKE_LOCKS = Path(".snakemake/locks")
_held = []  # keeps the lock's file object (and so the flock) alive for the process


def looks_like_dry_run(argv):
    """True for invocations that make nothing (dry run, lint, summaries, graphs, unlock)."""
    passive = {
        "--dry-run", "--dryrun", "--lint", "--summary", "--detailed-summary", "--list", "--list-rules",
        "--dag", "--rulegraph", "--filegraph", "--d3dag", "--unlock", "--list-changes", "--lc",
        "--list-input-changes", "--li", "--list-params-changes", "--lp", "--list-code-changes",
        "--report", "--cleanup-metadata", "--cleanup-shadow", "--delete-all-output",
        "--delete-temp-output", "--list-target-rules", "--lt", "-S", "-D",
    }
    for arg in argv[1:]:
        name = arg.split("=", 1)[0]
        if name in passive:
            return True
        if arg.startswith("-") and not arg.startswith("--") and arg[1:].isalpha() and "n" in arg[1:]:
            return True
    return False


def acquire(dry_run=False, store_root=None):
    """Take the run lock (or, for a dry run, only check it).  Returns a note for the log."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    handle = open(LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        if dry_run:
            return f"note: a run is in progress in this folder ({holder})"
        raise UserError(
            f"another Image.Batch run is working in this folder ({holder}). Wait for it to finish "
            "or stop it, then run again. (Nothing was changed.)"
        )
    if dry_run:
        handle.close()
        return ""
    note = ""
    if SNAKEMAKE_LOCKS.is_dir() and any(SNAKEMAKE_LOCKS.iterdir()):
        shutil.rmtree(SNAKEMAKE_LOCKS)
        note = "removed a stale Snakemake lock left by a run that is no longer alive"
    remove_stale_parts("results", only_dead_writers=False)  # no other run here is alive
    if store_root:
        remove_stale_parts(store_root)  # the store may be shared with runs in other folders
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()}, started {started}\n")
    handle.flush()
    _held.append(handle)
    return note
