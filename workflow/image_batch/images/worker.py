"""One helper process that makes the images for the main Snakemake process.

Image jobs run as threads of the Snakemake process (``force-use-threads``), so every API call,
decode, store write and PNG write of every job shared one interpreter lock with Snakemake's own
scheduler: at thousands of images the threads spent more time handing the lock to each other than
working.  Instead, the first image job of a run starts this worker (``python -m image_batch.images.worker``);
each job thread then only sends its paths over a Unix socket and waits, and the worker runs
:func:`image_batch.generate.make_image` in its own threads, on the other core.  The work done for an
image is exactly the same, in the same working directory, with the same response store, locks and
failure records; only the process differs.

The worker lives as long as the Snakemake process: it reads a pipe from its parent and, when that
closes (normal exit or ``kill -9``), it makes no new API calls, lets the calls in flight finish (so
what is paid for is stored) and exits.  Signals are the run's to act on (image_batch.run.interrupt):
the worker ignores Ctrl-C (SIGINT reaches the whole process group) and, told to ``stop`` (or on a
SIGTERM of its own), starts no new API call while it finishes the ones in flight; a run that
abandons them kills it.  Jobs that Snakemake runs in other processes (cluster
executors, job subprocesses) call ``make_image`` directly: for one job a second process is waste.
"""

import atexit
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from multiprocessing.connection import Client, Listener
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.held_signals import held_for_child, release

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding image_batch/


class WorkerError(UserError):
    """The worker reported that an image failed (the message says why) or the worker is gone."""


# ---------------------------------------------------------------------------------------------
# In the Snakemake process


class WorkerClient:
    """Starts the worker on first use and hands each job to it over a pooled connection."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self._address = None
        self._authkey = None
        self._idle = []
        self._abandoned = False  # the run abandoned its calls in flight: no worker is started again

    def _start(self):
        authkey = secrets.token_bytes(32)
        folder = tempfile.mkdtemp(prefix="image-batch-")
        address = os.path.join(folder, "worker.sock")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        # Each of the worker's threads would get a malloc arena of its own, and the large buffers of
        # contact sheets would stay spread over all of them (hundreds of MB): a few arenas suffice.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        # The worker starts with Ctrl-C and SIGTERM blocked (a child inherits the signal mask of the
        # thread that starts it) and takes them once its own handlers are in (:func:`main`): one that
        # came while it started is acted on then, not a KeyboardInterrupt traceback of its imports.
        with held_for_child():
            proc = subprocess.Popen(
                [sys.executable, "-m", "image_batch.images.worker", address],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=os.getcwd(),
            )
        # The key goes through the pipe, not the command line; the pipe stays open as the
        # worker's sign of life from us.
        proc.stdin.write(authkey.hex().encode() + b"\n")
        proc.stdin.flush()
        ready = proc.stdout.readline()
        if not ready.startswith(b"READY"):
            proc.kill()
            raise WorkerError("the image worker process did not start (see the messages above)")
        self._proc, self._address, self._authkey = proc, address, authkey
        atexit.register(self.close)

    def _checkout(self):
        with self._lock:
            if self._abandoned:
                raise WorkerError("not started: the run abandoned its calls in flight")
            if self._proc is None or self._proc.poll() is not None:
                self._idle.clear()
                self._start()
            if self._idle:
                return self._idle.pop()
            address, authkey = self._address, self._authkey
        return Client(address, family="AF_UNIX", authkey=authkey)

    def make_image(self, *args):
        return self.call("make_image", *args)

    def call(self, task, *args):
        """Run ``task`` (one of :data:`TASKS`) with ``args`` in the worker; its result, or its
        failure as a WorkerError."""
        if task == "make_image" and _stopped():  # the run is stopping: no worker is started for it
            return _task(task)(*args)
        conn = self._checkout()
        if task == "make_image" and _stopped():
            # the run began to stop while this job waited for the worker (being started): it makes
            # no call, here where the stop is known (generate.NotStarted; the store may serve it)
            with self._lock:
                self._idle.append(conn)
            return _task(task)(*args)
        try:
            conn.send((task, args))
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            conn.close()
            raise WorkerError(
                f"the image worker process ended while making this image ({exc!r}): a call it had in "
                "flight may be billed and its answer lost; run again to make it (answers that had "
                "arrived are in the response store and are not paid for again)"
            ) from None
        with self._lock:
            self._idle.append(conn)
        if kind == "ok":
            return value
        if kind == "failed":
            raise WorkerError(value)
        raise RuntimeError(f"the image worker hit an unexpected error:\n{value}")

    def stop(self, reason):
        """The run is stopping: the worker starts no new API call and finishes the ones in flight.
        Returns, once it has taken note, how many calls it has in flight (0 for a worker not started
        or gone)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                return 0
        try:
            return self.call("stop", reason)
        except WorkerError:
            return 0

    def kill(self):
        """The run abandons the calls in flight: the worker goes at once (their answers are lost)."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._idle.clear()
            self._abandoned = True
        if proc is not None:
            proc.kill()
            proc.wait()
            self._remove_socket()

    def _remove_socket(self):
        if self._address:
            Path(self._address).unlink(missing_ok=True)
            try:
                os.rmdir(os.path.dirname(self._address))
            except OSError:
                pass

    def close(self):
        with self._lock:
            proc, self._proc = self._proc, None
            for conn in self._idle:
                conn.close()
            self._idle.clear()
        if proc is not None:
            proc.stdin.close()  # the worker finishes what is in flight and exits
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._remove_socket()


_client = WorkerClient()

# What the worker runs: an image, and a contact sheet (decoding many PNGs; beside Snakemake's
# scheduler it would hold that process's memory and lock).
TASKS = {
    "make_image": ("image_batch.images.generate", "make_image"),
    "contact_sheet": ("image_batch.report.contact_sheet", "build_job"),
    "stop": ("image_batch.images.generate", "stop_calls"),  # the run is stopping: no new API call
}


def _task(name):
    import importlib

    module, function = TASKS[name]
    return getattr(importlib.import_module(module), function)


def make_image(spec_file, png_file, sidecar_file, log_file, settings, in_worker=True):
    """Make one image, in the worker process when ``in_worker`` (jobs running as threads of the
    main Snakemake process), else right here."""
    from image_batch.images.generate import make_image as make_here

    args = (str(spec_file), str(png_file), str(sidecar_file), str(log_file), settings)
    if not in_worker or not settings.image_worker:
        return make_here(*args)
    return _client.make_image(*args)


def _stopped():
    from image_batch.images.failures import stopped_here

    return stopped_here() is not None


def stop(reason="the run is stopping"):
    """This process's run is stopping: no new API call, here or in the worker; the calls in flight go
    on. Returns how many there are (here and in the worker)."""
    from image_batch.images.generate import stop_calls

    return stop_calls(reason) + _client.stop(reason)


def abandon():
    """This process's run abandons its calls in flight: the worker goes at once."""
    _client.kill()


def wanted(workflow):
    """Whether this Snakemake process runs image jobs as its own threads (the case the worker is for)."""
    return bool(workflow.is_main_process and workflow.local_exec and workflow.use_threads)


# ---------------------------------------------------------------------------------------------
# In the worker process


class _Server:
    def __init__(self, address, authkey):
        self.listener = Listener(address, family="AF_UNIX", authkey=authkey)
        self.active = 0
        self.cond = threading.Condition()

    def serve(self):
        while True:
            try:
                conn = self.listener.accept()
            except Exception:  # a client that failed the handshake (wrong key): ignore it
                continue
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn):
        with conn:
            while True:
                try:
                    task, args = conn.recv()
                except (EOFError, OSError, ValueError):
                    return
                with self.cond:
                    self.active += 1
                try:
                    try:
                        reply = ("ok", _task(task)(*args))
                    except UserError as exc:
                        reply = ("failed", str(exc))
                    except BaseException:  # a bug: report it in full to the job, which fails
                        reply = ("error", traceback.format_exc())
                    conn.send(reply)
                except OSError:
                    return
                finally:  # done once the job has its answer: a draining worker exits after that
                    with self.cond:
                        self.active -= 1
                        self.cond.notify_all()

    def drain_and_exit(self):
        """Our Snakemake process is gone: no new calls, finish the ones in flight, exit."""
        from image_batch.images import failures

        failures.stop_here("the Snakemake run ended")
        with self.cond:
            self.cond.wait_for(lambda: self.active == 0)
        os._exit(0)


def _stop_calls(reason):
    from image_batch.images.generate import stop_calls

    stop_calls(reason)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # Ctrl-C reaches every process of the terminal's group: the run decides (it tells us to stop, or
    # kills us when the calls in flight are abandoned). A SIGTERM of our own: no new call.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: _stop_calls("the image worker got SIGTERM"))
    release()  # held while we started (WorkerClient._start)
    address = argv[0]
    authkey = bytes.fromhex(sys.stdin.readline().strip())
    server = _Server(address, authkey)
    try:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
    except BrokenPipeError:  # our run ended (abandoned) while we started: nothing to do
        os._exit(0)

    def watch_parent():
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        server.drain_and_exit()

    threading.Thread(target=watch_parent, daemon=True).start()
    # The tasks' modules, imported once before any connection is served: threads that unpickle
    # their first calls at once would import them concurrently, and one could see a half-made
    # module ("partially initialized module ... circular import") and fail its image.
    import importlib

    for module, _ in TASKS.values():
        importlib.import_module(module)
    server.serve()


if __name__ == "__main__":
    main()


def contact_sheet(members_file, png_paths, output, log_file, in_worker=True, use_worker=True):
    """Build one contact sheet, in the worker process when ``in_worker`` (see :func:`make_image`)."""
    args = (str(members_file), [str(p) for p in png_paths], str(output), str(log_file))
    if not in_worker or not use_worker:
        return _task("contact_sheet")(*args)
    return _client.call("contact_sheet", *args)
