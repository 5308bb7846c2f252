"""One live run per folder.

A real run takes an exclusive flock on ``.snakemake/image-batch.lock`` when it starts (Snakemake's
``onstart``, before any job) and holds it for its whole life; the kernel drops it when the process
dies, even by ``kill -9``, so nothing stale is ever left to clear. A second real run is refused
before any job. Planning (every dry run included) only looks (:func:`holder`): it never takes it.

Snakemake's own directory lock is switched off in the workflow profile (``nolock``): this lock
covers every real run in the folder, and unlike Snakemake's it cannot go stale after a crash, so no
run ever needs ``--unlock``.
"""

import datetime
import fcntl
import os
import time
from pathlib import Path

from image_batch.common.errors import UserError

LOCK_FILE = Path(".snakemake/image-batch.lock")
_held = []  # keeps the lock's file object (and so the flock) alive for the process


def holder(path=LOCK_FILE):
    """Who holds the run lock ("pid 123, started ..."), or None when no real run is alive.
    Looks without taking it: a shared probe that a run holding it exclusively refuses."""
    try:
        handle = open(path)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def acquire(path=LOCK_FILE, wait=3.0):
    """Take the run lock for this process, or raise UserError naming the run that holds it.
    Waits up to ``wait`` seconds, so that another process's momentary look does not refuse us."""
    if _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held for the life of the process
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                who = handle.read().strip() or "another process"
                handle.close()
                raise UserError(
                    f"another Image.Batch run is working in this folder ({who}). Wait for it to finish "
                    "or stop it, then run again. (Nothing was changed.)"
                ) from None
            time.sleep(0.05)
    handle.seek(0)
    handle.truncate()
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()}, started {started}\n")
    handle.flush()
    _held.append(handle)


def held():
    return bool(_held)
