"""Ctrl-C and SIGTERM during a real run: what is paid for is kept.

A call sent to the API is billed whether or not anyone waits for its answer. So the first Ctrl-C
(SIGINT, which the terminal sends to every process of the run) or SIGTERM (a container stop, a
preempted cluster job) starts no new API call, here or in the image worker, lets Snakemake start no
new job (its own graceful stop, what it does on SIGTERM), and lets the calls in flight finish: their
answers go into the response store as they arrive and their images are made. It says so in one line.
A second one abandons the calls in flight (the worker is killed), says what that costs, and ends the
process at once with the summary. No traceback either way.

Snakemake's own handling is replaced from the moment the run's jobs may start (``onstart``): on
SIGINT it would raise KeyboardInterrupt in its scheduler and leave the worker, which got the same
SIGINT, to die with the answers it waited for. Before that (reading the sheet, planning, a dry run,
waiting for batches) nothing is in flight: the process ends at once with one line, not a traceback.
"""

import os
import signal
import sys
import threading

from image_batch.common.held_signals import release
from image_batch.images import worker
from image_batch.run import quiet

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report it

_received = []  # the signals received, in order
_lock = threading.Lock()
_abandoned = []  # how many calls were in flight when they were abandoned


def received():
    """The name of the first signal that stopped this run ("Ctrl-C", "SIGTERM"), or None."""
    with _lock:
        return NAMES[_received[0]] if _received else None


def abandoned():
    """How many calls in flight a second signal abandoned, or None."""
    return _abandoned[0] if _abandoned else None


_before = ["before any image job started: nothing was paid for"]


def install_early():
    """Until :func:`install`: SIGINT or SIGTERM ends the process at once with one line (nothing is in
    flight). Call from the main thread of the main Snakemake process, as early as possible."""

    def handler(signum, frame):
        # os.write, not print: the main thread may be in the middle of a write to stderr
        os.write(2, f"\nImage.Batch: stopped ({NAMES[signum]}) {_before[0]}\n".encode())
        os._exit(EXIT_CODES[signum])

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    # main.py starts Snakemake with them held (a Ctrl-C while Snakemake imports itself would be a
    # KeyboardInterrupt traceback): one that came since is handled now, by the handler above
    release()


def waiting_for(text):
    """What a signal now interrupts, for the line :func:`install_early`'s handler prints."""
    _before[0] = text


def leave_to_snakemake(stop_scheduling):
    """Jobs that run elsewhere (a cluster executor, job processes): Snakemake's own handling, as if
    :func:`install_early` had not been called (Ctrl-C cancels the jobs, SIGTERM waits for them)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: stop_scheduling())


def install(stop_scheduling, last_words, out=sys.stderr):
    """From now on SIGINT and SIGTERM stop the run gracefully, a second one abandons it.
    ``stop_scheduling()`` makes Snakemake start no new job and end once the running ones are done;
    ``last_words()`` prints the summary before an abandoned run ends. Call from the main thread."""

    def handler(signum, frame):
        # The work is done in a thread: the handler interrupts the main thread anywhere, perhaps
        # holding the scheduler's lock or half-way through a write to stderr.
        threading.Thread(target=_act, args=(signum, stop_scheduling, last_words, out), daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _act(signum, stop_scheduling, last_words, out):
    with _lock:
        _received.append(signum)
        count = len(_received)
    if count == 1:
        quiet.stopping()
        # no new call, here or in the worker (jobs already handed over), first: Snakemake's graceful
        # stop waits for its scheduler's lock, which its main loop may hold while it starts more jobs
        calls = worker.stop()
        stop_scheduling()  # no new job
        if calls:
            line = (
                f"stopping: {calls} call(s) in flight are being finished and their answers kept, no new call is "
                f"made; {NAMES[signum]} again to abandon them"
            )
        else:
            line = (
                f"stopping: no new image is started, the ones being made are finished; {NAMES[signum]} again "
                "to stop now"
            )
        print(f"Image.Batch: {line}", file=out, flush=True)
    elif count == 2:
        calls = worker.stop()  # how many are in flight now
        _abandoned.append(calls)
        quiet.silence()  # the jobs whose calls are dropped fail now: the line below says it for all
        print(
            f"Image.Batch: abandoned {calls} call(s) in flight: the API may bill them; their answers are lost",
            file=out,
            flush=True,
        )
        worker.abandon()
        try:
            last_words()
        finally:
            out.flush()
            os._exit(EXIT_CODES[_received[0]])
