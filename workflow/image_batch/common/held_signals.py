"""Ctrl-C and SIGTERM held while a process of the run starts.

A child inherits the signal mask of the thread that starts it. Started with SIGINT and SIGTERM
blocked, it takes one that comes while it imports itself once its own handlers are in
(:func:`release`), instead of dying with a KeyboardInterrupt traceback. main.py starts Snakemake
so, and the run starts its image worker so.
"""

import signal
from contextlib import contextmanager

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def held_for_child():
    """SIGINT and SIGTERM blocked in this thread while the block runs (start the child inside it);
    this thread's mask as it was afterwards (a signal held meanwhile is delivered then)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def release():
    """In the child, once its handlers are in: SIGINT and SIGTERM taken from now on (one held since
    it started is handled now), whatever mask it inherited."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
