"""Ctrl-C and SIGTERM: the calls in flight are finished and their answers kept; a second Ctrl-C abandons them.

Real processes and real signals: ``snakemake`` and ``main.py`` are started in a session of their own
(``start_new_session``), so a signal to their process group is what a terminal's Ctrl-C sends. The stand-in
holds its answers back (``hold_answers``) until the test has interrupted the run: calls are in flight for as
long as the test needs, on a machine of any speed, and no wait assumes how fast anything is.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import api_slots, update_config
from tests.support.fake_openai import expected_color

API_SLOTS = api_slots()
N = 12  # more rows than slots: some are in flight at the Ctrl-C, the rest not started
STOPPING = "Image.Batch: stopping:"
PATIENCE = 300  # seconds for a condition that comes in well under one on an idle machine


def prompt(i):
    return f"prompt number {i} of a calm lake"


@pytest.fixture
def sheet(keyed):
    lines = ["image_id,context,description"] + [f"img{i:03d},Nature,{prompt(i)}" for i in range(N)]
    (keyed.root / "input.csv").write_text("\n".join(lines) + "\n")
    return keyed


class Live:
    """A run in a process group of its own, its output (stdout and stderr) in a file."""

    def __init__(self, runner, command, name, stdin=subprocess.DEVNULL):
        self.log = runner.root.parent / f"{name}.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=runner.root,
                env=runner.env,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self):
        return self.log.read_text(errors="replace")

    def ctrl_c(self):
        """What a terminal sends on Ctrl-C: SIGINT to every process of the foreground group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait_for_line(self, text):
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended before saying {text!r}:\n{self.output[-6000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the output:\n{self.output[-6000:]}")

    def wait(self):
        try:
            return self.proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"the run did not end:\n{self.output[-6000:]}") from None

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def snakemake(runner, name="run"):
    return Live(runner, [sys.executable, "-m", "snakemake", "--cores", "4", "--config", "input_csv=input.csv"], name)


def main_py(runner, name="run"):
    return Live(runner, [sys.executable, "main.py", "input.csv", "--cores", "4"], name)


def wait_until(condition, run):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if run.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the condition never held:\n{run.output[-6000:]}")
        time.sleep(0.05)


def stored_prompts(root):
    return {json.loads(path.read_text())["request"]["prompt"] for path in (root / "response-store").glob("??/*.json")}


def lines_with(output, text):
    return [line for line in output.splitlines() if text in line]


def calls_in_flight(api, count):
    """A ``ready`` for interrupted_run: ``count`` calls of the held-back API are in flight."""

    def ready(run):
        assert api.wait_in_flight(count, PATIENCE), run.output[-6000:]

    return ready


def interrupted_run(runner, api, start, send, ready=None):
    """Start a run with every answer held back, wait until it is ``ready`` (by default: API_SLOTS
    calls in flight), ``send`` the signal, wait for the one "stopping" line, then let the answers
    through and wait for the end. Returns the run."""
    api.hold_answers()
    run = start(runner)
    try:
        (ready or calls_in_flight(api, API_SLOTS))(run)
        send(run)
        run.wait_for_line(STOPPING)
        api.release_answers()
        run.wait()
    finally:
        api.release_answers()
        run.kill()
    return run


def assert_interrupted_well(run, api, root):
    output = run.output
    assert run.proc.returncode != 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    [stopping] = lines_with(output, STOPPING)
    assert f"{API_SLOTS} call(s) in flight are being finished and their answers kept" in stopping
    # no new call once stopped: exactly the calls that were in flight were made, and each was paid for once
    assert len(api.calls) == API_SLOTS, [c["body"]["prompt"] for c in api.calls]
    assert len(api.paid_calls) == API_SLOTS
    paid = {call["body"]["prompt"] for call in api.paid_calls}
    # every answer paid for is in the response store
    assert paid <= stored_prompts(root)
    # and no new image job was started (each job writes its log; those not started have none)
    assert len(list((root / "results/logs/images/nature").glob("*.log"))) == API_SLOTS
    assert "Image.Batch: summary of run" in output, output[-6000:]
    assert "stopped by" in output
    return paid


def assert_rerun_pays_only_for_the_rest(runner, api, paid, root):
    before = len(api.paid_calls)
    rerun = runner.snakemake("--config", "input_csv=input.csv")
    assert "Traceback" not in rerun.output
    again = [call["body"]["prompt"] for call in api.paid_calls[before:]]
    assert not set(again) & paid, "an answer kept at the Ctrl-C was paid for again"
    assert len(again) == N - len(paid)
    from PIL import Image

    for i in range(N):
        with Image.open(root / f"results/images/nature/img{i:03d}.png") as image:
            assert image.convert("RGB").getpixel((0, 0)) == expected_color(prompt(i))
    assert not list(root.rglob("*.part"))


@pytest.mark.parametrize("image_worker", [True, False], ids=["image-worker", "calls-in-job-threads"])
def test_ctrl_c_finishes_the_calls_in_flight_keeps_their_answers_and_the_rerun_pays_for_the_rest(
    sheet, api, image_worker
):
    update_config(sheet.root, image_worker=image_worker)
    run = interrupted_run(sheet, api, snakemake, Live.ctrl_c)
    paid = assert_interrupted_well(run, api, sheet.root)
    assert "Ctrl-C again to abandon them" in lines_with(run.output, STOPPING)[0]
    assert_rerun_pays_only_for_the_rest(sheet, api, paid, sheet.root)


@pytest.mark.parametrize("group", [False, True], ids=["main-process", "process-group"])
def test_sigterm_does_the_same(sheet, api, group):
    """A container stop: SIGTERM to the main process only (the image worker does not get it: the run
    tells it); a preempted cluster job: SIGTERM to every process (the worker leaves it to the run)."""
    kill = os.killpg if group else os.kill
    run = interrupted_run(sheet, api, snakemake, lambda run: kill(run.proc.pid, signal.SIGTERM))
    assert "SIGTERM again to abandon them" in lines_with(run.output, STOPPING)[0]
    paid = assert_interrupted_well(run, api, sheet.root)
    assert_rerun_pays_only_for_the_rest(sheet, api, paid, sheet.root)


def test_ctrl_c_through_main_py_waits_for_the_run_prints_its_summary_and_exits_130(sheet, api):
    run = interrupted_run(sheet, api, main_py, Live.ctrl_c)
    assert run.proc.returncode == 130, run.output[-6000:]
    paid = assert_interrupted_well(run, api, sheet.root)
    assert_rerun_pays_only_for_the_rest(sheet, api, paid, sheet.root)


def test_sigterm_to_main_py_alone_is_passed_to_its_run(sheet, api):
    """main.py is PID 1 of the container: `docker stop` sends SIGTERM to it alone."""
    run = interrupted_run(sheet, api, main_py, lambda run: os.kill(run.proc.pid, signal.SIGTERM))
    assert run.proc.returncode == 143, run.output[-6000:]
    assert_interrupted_well(run, api, sheet.root)


def test_jobs_waiting_for_their_turn_to_call_make_no_call_after_a_ctrl_c(sheet, api):
    """Under a rate limit, image jobs handed to the worker wait their turn to call the API. A Ctrl-C
    ends their wait: they make no call, and are not failures (the rerun makes them)."""
    update_config(sheet.root, openai={"requests_per_minute": 1})  # the second call would wait a minute
    logs = sheet.root / "results/logs/images/nature"

    def ready(run):
        # one call in flight, the other jobs started (each has opened its log) and waiting their turn
        wait_until(lambda: api.in_flight == 1 and len(list(logs.glob("*.log"))) == API_SLOTS, run)

    run = interrupted_run(sheet, api, snakemake, lambda run: run.ctrl_c(), ready)
    output = run.output
    assert run.proc.returncode != 0 and "Traceback" not in output, output[-6000:]
    [stopping] = lines_with(output, STOPPING)
    assert "1 call(s) in flight are being finished and their answers kept" in stopping
    assert len(api.calls) == 1 and {c["body"]["prompt"] for c in api.paid_calls} <= stored_prompts(sheet.root)
    assert "FAILED" not in output  # the jobs that made no call are no failures: no line each
    assert "1 made (1 paid for" in output and "0 failed" in output and f"{N - 1} not made" in output
    update_config(sheet.root, openai={"requests_per_minute": None})
    assert_rerun_pays_only_for_the_rest(sheet, api, {c["body"]["prompt"] for c in api.paid_calls}, sheet.root)


@pytest.mark.parametrize("start", [snakemake, main_py], ids=["snakemake", "main.py"])
def test_a_second_ctrl_c_abandons_the_calls_in_flight_and_says_what_it_costs(sheet, api, start):
    api.hold_answers()
    run = start(sheet)
    try:
        assert api.wait_in_flight(API_SLOTS, PATIENCE), run.output[-6000:]
        run.ctrl_c()
        run.wait_for_line(STOPPING)
        run.ctrl_c()
        run.wait()  # while the API still holds every answer: the run did not wait for them
        assert api.in_flight == API_SLOTS
    finally:
        api.release_answers()
        run.kill()
    assert api.wait_answered(PATIENCE)
    # no process of the run lives on to finish them: the answers are lost, as the run said
    assert stored_prompts(sheet.root) == set()
    output = run.output
    assert run.proc.returncode != 0
    assert "Traceback" not in output, output[-6000:]
    assert len(lines_with(output, STOPPING)) == 1
    [abandoned] = lines_with(output, "Image.Batch: abandoned")
    assert f"abandoned {API_SLOTS} call(s) in flight: the API may bill them; their answers are lost" in abandoned
    assert "Image.Batch: summary of run" in output, output[-6000:]
    assert len(api.calls) == API_SLOTS  # nothing new was started
    # the rerun makes every image (the abandoned ones are asked for again)
    sheet.snakemake("--config", "input_csv=input.csv")
    for i in range(N):
        assert (sheet.root / f"results/images/nature/img{i:03d}.png").exists()


# ---------------------------------------------------------------------------------------------
# A signal while a process of the run is still starting (Python and its imports): the moment a
# Ctrl-C at the terminal lands on the image worker being started, or on the Snakemake run main.py
# has just started. A gate holds that process at its start (a sitecustomize on PYTHONPATH, which
# Python runs before anything else) until the test has sent the signal: no timing to guess.

GATE = """
import os, time
if os.environ.get("TEST_GATE_ON") and os.environ["TEST_GATE_ON"].encode() in open("/proc/self/cmdline", "rb").read():
    folder = os.environ["TEST_GATE"]
    open(os.path.join(folder, "started"), "w").close()
    while not os.path.exists(os.path.join(folder, "go")):
        time.sleep(0.01)
"""


def gated(runner, process):
    """Hold every process of the run whose command line holds ``process`` at its start; the gate's folder."""
    folder = runner.root.parent / "gate"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(GATE)
    runner.env.update(PYTHONPATH=str(folder), TEST_GATE=str(folder), TEST_GATE_ON=process)
    return folder


def signal_at_the_gate(runner, gate, start, sig):
    """Start the run, wait until a gated process is starting, send ``sig`` to the run's group, open the gate."""
    run = start(runner)
    try:
        wait_until(lambda: (gate / "started").exists(), run)
        os.killpg(run.proc.pid, sig)
        (gate / "go").touch()
        run.wait()
    finally:
        run.kill()
    return run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_while_the_image_worker_starts_stops_the_run_with_no_traceback_and_no_call(sheet, api, sig):
    """The worker gets the terminal's Ctrl-C (or a group's SIGTERM) too: while it starts, before its own
    handlers are in, it takes it once they are, and does not die of it; no job makes a call after it."""
    gate = gated(sheet, "image_batch.images.worker")
    run = signal_at_the_gate(sheet, gate, snakemake, sig)
    output = run.output
    assert run.proc.returncode != 0, output[-6000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-6000:]
    assert "did not start" not in output and "FAILED" not in output, output[-6000:]
    assert len(lines_with(output, STOPPING)) == 1, output[-6000:]
    assert "Image.Batch: summary of run" in output and "0 failed" in output, output[-6000:]
    assert api.calls == []  # every job began after the signal: none made a call
    assert_rerun_pays_only_for_the_rest(sheet, api, set(), sheet.root)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_signal_to_main_py_while_snakemake_starts_ends_it_in_one_line(sheet, api, sig):
    """main.py has started Snakemake, which is still importing itself (before the Snakefile's handlers):
    the signal waits for them, and the run ends with one line, no traceback, nothing made or paid."""
    gate = gated(sheet, "snakemake")
    run = signal_at_the_gate(sheet, gate, main_py, sig)
    output = run.output
    assert run.proc.returncode == 128 + sig, output[-6000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-6000:]
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert len(lines_with(output, f"Image.Batch: stopped ({name}) before any image job started")) == 1, output
    assert api.calls == [] and not (sheet.root / "results/images").exists()


# ---------------------------------------------------------------------------------------------
# The image worker on its own: it drains the calls in flight

PARENT = """
import sys, threading
sys.path.insert(0, {workflow!r})
from image_batch.images import worker
from image_batch.common.settings import load_settings
from image_batch.descriptions.sheet import read_sheet
from image_batch.descriptions.specs import build_specs
from image_batch.common.fileio import atomic_write_json
settings = load_settings({{"input_csv": "input.csv", "retry": {{"max_attempts": 1}}}})
specs = build_specs(read_sheet("input.csv"), settings, "openai", "input.csv")

def job(spec):
    path = f"results/specs/{{spec['folder']}}/{{spec['image_id']}}.json"
    atomic_write_json(path, spec)
    base = f"results/images/{{spec['folder']}}/{{spec['image_id']}}"
    try:
        worker.make_image(path, base + ".png", base + ".json", base + ".log", settings)
        print("made", spec["image_id"], flush=True)
    except worker.WorkerError as error:
        print("failed", spec["image_id"], str(error).replace(chr(10), " "), flush=True)

worker._client._checkout()  # start the worker
print("worker", worker._client._proc.pid, flush=True)
threads = [threading.Thread(target=job, args=(spec,)) for spec in specs[:{count}]]
for thread in threads:
    thread.start()
if sys.stdin.readline().strip() == "stop":
    print("in flight at the stop:", worker._client.stop("the run is stopping"), flush=True)
    job(specs[-1])  # handed over after the stop
for thread in threads:
    thread.join()
print("done", flush=True)
"""


def start_parent(runner, count, stdin=subprocess.DEVNULL):
    """A stand-in for the Snakemake process: ``count`` image jobs as threads, handed to the worker."""
    script = PARENT.format(workflow=str(runner.root / "workflow"), count=count)
    run = Live(runner, [sys.executable, "-c", script], "parent", stdin=stdin)
    run.wait_for_line("worker ")
    return run, int(lines_with(run.output, "worker ")[0].split()[1])


def test_the_worker_ignores_ctrl_c_and_told_to_stop_finishes_its_calls_in_flight_and_starts_none(sheet, api):
    api.hold_answers()
    count = 3
    run, worker_pid = start_parent(sheet, count, stdin=subprocess.PIPE)
    try:
        assert api.wait_in_flight(count, PATIENCE), run.output
        # the terminal's Ctrl-C reaches the worker too: it is the run's to act on, not the worker's
        os.kill(worker_pid, signal.SIGINT)
        run.proc.stdin.write(b"stop\n")
        run.proc.stdin.flush()
        run.wait_for_line(f"img{N - 1:03d}")  # the job handed over after the stop has its answer
        assert api.in_flight == count
        api.release_answers()
        run.wait_for_line("done")
    finally:
        api.release_answers()
        run.kill()
    output = run.output
    assert "Traceback" not in output, output
    assert sorted(lines_with(output, "made ")) == [f"made img{i:03d}" for i in range(count)]
    assert f"in flight at the stop: {count}" in output  # the worker counts its calls in flight
    [refused] = lines_with(output, "failed ")
    assert f"img{N - 1:03d}" in refused and "not started: the run is stopping" in refused
    assert len(api.calls) == count  # no call after the stop
    assert {call["body"]["prompt"] for call in api.paid_calls} <= stored_prompts(sheet.root)
    for i in range(count):
        assert (sheet.root / f"results/images/nature/img{i:03d}.png").exists()


def test_the_worker_finishes_its_calls_in_flight_when_its_run_is_killed(sheet, api):
    """kill -9 of the Snakemake process while the worker waits on the API: the worker makes no new
    call, lets the calls in flight finish, keeps their answers and images, and exits."""
    api.hold_answers()
    count = 3
    run, worker_pid = start_parent(sheet, count)
    try:
        assert api.wait_in_flight(count, PATIENCE), run.output
        os.kill(run.proc.pid, signal.SIGKILL)  # the parent alone: the worker lives on
        run.proc.wait()
        assert _alive(worker_pid)
    finally:
        api.release_answers()
    assert _wait_gone(worker_pid), "the worker must exit once its calls are done"
    assert len(api.calls) == count
    assert {call["body"]["prompt"] for call in api.paid_calls} <= stored_prompts(sheet.root)
    for i in range(count):
        assert (sheet.root / f"results/images/nature/img{i:03d}.png").exists()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_while_waiting_for_batches_ends_at_once_and_the_rerun_collects_them(sheet, api):
    """Before any image job nothing is in flight here: the batches go on at the API. One line, no
    traceback, and the rerun polls the same batches instead of submitting again."""
    update_config(sheet.root, mode="batch", batch={"poll_seconds": 0.05})
    api.batch_polls_to_complete = 10**9  # in progress until the test says
    run = snakemake(sheet)
    try:
        run.wait_for_line("in_progress")  # submitted, and polling
        run.ctrl_c()
        assert run.wait() == 130
    finally:
        run.kill()
    output = run.output
    assert "Traceback" not in output, output[-6000:]
    [line] = lines_with(output, "Image.Batch: stopped (Ctrl-C) while waiting for the batches")
    assert "run the same command again to collect their answers" in line
    assert len(api.batches_created) == 1
    api.complete_batches_after(1)
    sheet.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 1 and api.calls == []
    assert len(list((sheet.root / "results/images/nature").glob("*.png"))) == N


def test_the_first_signal_stops_calls_before_it_waits_for_the_scheduler(monkeypatch):
    """Snakemake's graceful stop takes its scheduler's lock, which its main loop holds while it
    handles jobs: the calls are stopped first, so that no job handed to a thread meanwhile calls."""
    import io

    from image_batch.images import failures
    from image_batch.run import interrupt, quiet

    for name, value in (("_received", []), ("_abandoned", [])):
        monkeypatch.setattr(interrupt, name, value)
    monkeypatch.setattr(quiet, "_stopping", [])
    monkeypatch.setattr(failures, "_stopped_here", [])
    monkeypatch.setattr(failures, "_stopping", threading.Event())
    seen = []
    interrupt._act(signal.SIGINT, lambda: seen.append(failures.stopped_here()), lambda: None, io.StringIO())
    assert seen and seen[0] is not None, "the scheduler was asked to stop while calls could still start"
