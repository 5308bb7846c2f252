"""The image worker: jobs of a local run are made in one helper process, with the same results."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from image_batch.descriptions.sheet import read_sheet
from image_batch.descriptions.specs import build_specs
from image_batch.images import worker
from image_batch.images.generate import make_image
from tests.conftest import settings_for

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"


def _spec(tmp_path, provider="offline", config=None):
    sheet = tmp_path / "in.csv"
    sheet.write_text("image_id,context,description\nw1,Kitchen,a red kettle\n")
    config = config or settings_for(offline={"size": "64x64"})
    [spec] = build_specs(read_sheet(sheet), config, provider, sheet)
    path = tmp_path / "results" / "specs" / "kitchen" / "w1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(spec))
    return path, config


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) counts as gone
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else True


def _wait_gone(pid, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_worker_makes_the_same_image_in_another_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec, config = _spec(tmp_path)
    client = worker.WorkerClient()
    try:
        via_worker = client.make_image(str(spec), "a/w1.png", "a/w1.json", "a/w1.log", config)
        worker_pid = client._proc.pid
        assert worker_pid != os.getpid()
        # a second job reuses the same process and connection
        client.make_image(str(spec), "c/w1.png", "c/w1.json", "c/w1.log", config)
        assert client._proc.pid == worker_pid
    finally:
        client.close()
    here = make_image(spec, "b/w1.png", "b/w1.json", "b/w1.log", config)
    assert Path("a/w1.png").read_bytes() == Path("b/w1.png").read_bytes()
    assert via_worker["sha256"] == here["sha256"]
    assert _wait_gone(worker_pid), "the worker should exit when its client closes"


def test_a_failed_image_comes_back_as_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_API_KEY", "sk-test-worker-0000")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    config = settings_for(
        openai={"model": "gpt-image-2.5-sunburst", "timeout": 2},
        retry={"max_attempts": 1, "max_seconds": 5, "initial_wait": 0.01, "max_wait": 0.01},
    )
    spec, config = _spec(tmp_path, "openai", config)
    client = worker.WorkerClient()
    try:
        with pytest.raises(worker.WorkerError) as failed:
            client.make_image(str(spec), "a/w1.png", "a/w1.json", "a/w1.log", config)
    finally:
        client.close()
    assert "image w1 (Kitchen)" in str(failed.value)
    assert "sk-test-worker" not in str(failed.value)
    assert not Path("a/w1.png").exists()
    assert json.loads(Path("results/logs/failures/kitchen/w1.json").read_text())["disposition"] == "gave-up"


def test_the_worker_goes_when_its_snakemake_process_is_killed(tmp_path):
    """kill -9 of the parent: the worker sees its pipe close, and exits by itself."""
    spec, config = _spec(tmp_path)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(WORKFLOW)!r})
        from image_batch.images import worker
        from image_batch.common.settings import load_settings
        settings = load_settings({{"input_csv": "in.csv", "offline": {{"size": "64x64"}}}})
        worker.make_image({str(spec)!r}, "a/w1.png", "a/w1.json", "a/w1.log", settings)
        print(worker._client._proc.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        assert (tmp_path / "a" / "w1.png").exists()
        assert _alive(worker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(worker_pid), "an orphaned worker must not outlive its run"


def test_jobs_in_other_processes_make_images_where_they_are(tmp_path, monkeypatch):
    """in_worker=False (cluster jobs, job subprocesses) or image_worker: false: no second process."""
    monkeypatch.chdir(tmp_path)
    spec, config = _spec(tmp_path)
    before = worker._client._proc
    worker.make_image(spec, "a/w1.png", "a/w1.json", "a/w1.log", config, in_worker=False)
    worker.make_image(spec, "b/w1.png", "b/w1.json", "b/w1.log", dataclasses.replace(config, image_worker=False))
    assert worker._client._proc is before is None
    assert Path("a/w1.png").read_bytes() == Path("b/w1.png").read_bytes()


def test_a_job_killed_while_writing_its_png_leaves_no_half_written_png(tmp_path):
    """A real process killed in the middle of writing the PNG (by the kernel: SIGXFSZ, its file-size
    limit set to half the PNG's size): the image's path holds no PNG at all, never half of one (a
    half PNG beside its old sidecar could pass for made). The PNG is written to a temporary name
    and renamed into place."""
    spec, _ = _spec(tmp_path)
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: the kernel kills, as a crash would
        sys.path.insert(0, {str(WORKFLOW)!r})
        from image_batch.images.generate import make_image
        from image_batch.common.settings import load_settings
        settings = load_settings({{"input_csv": "in.csv", "offline": {{"size": "64x64"}}}})
        limit = int(sys.argv[1])
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        make_image({str(spec)!r}, sys.argv[2] + "/w1.png", sys.argv[2] + "/w1.json", sys.argv[2] + "/w1.log", settings)
    """)

    def make(limit, folder):
        return subprocess.run([sys.executable, "-c", script, str(limit), folder], cwd=tmp_path, capture_output=True)

    assert make(0, "whole").returncode == 0
    size = (tmp_path / "whole/w1.png").stat().st_size
    log = (tmp_path / "whole/w1.log").stat().st_size
    assert size // 2 > log, "the job's log must fit under the limit: only the PNG may hit it"
    cut = make(size // 2, "cut")
    assert cut.returncode == -signal.SIGXFSZ, cut.stderr.decode()[-2000:]  # killed while writing the PNG
    assert not (tmp_path / "cut/w1.png").exists()
    assert not (tmp_path / "cut/w1.json").exists()


def test_after_the_calls_are_abandoned_no_worker_is_started_again(tmp_path, monkeypatch):
    """A second Ctrl-C kills the worker; a job that comes after (one queued for a free thread) must not
    start another one, which would find its run gone (a BrokenPipeError traceback) or make calls."""
    monkeypatch.chdir(tmp_path)
    spec, config = _spec(tmp_path)
    client = worker.WorkerClient()
    try:
        client.make_image(str(spec), "a/w1.png", "a/w1.json", "a/w1.log", config)
        first = client._proc.pid
        client.kill()
        with pytest.raises(worker.WorkerError, match="abandoned"):
            client.make_image(str(spec), "b/w1.png", "b/w1.json", "b/w1.log", config)
        assert client._proc is None and not Path("b/w1.png").exists()
    finally:
        client.close()
    assert _wait_gone(first)


def test_a_worker_whose_run_is_gone_before_it_is_ready_exits_quietly(tmp_path):
    """Its run ended (abandoned) while it started: no traceback for the READY nobody reads."""
    read, write = os.pipe()
    os.close(read)  # nobody reads what the worker says
    try:
        started = subprocess.run(
            [sys.executable, "-m", "image_batch.images.worker", str(tmp_path / "worker.sock")],
            input=b"00" * 32 + b"\n",
            stdout=write,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(WORKFLOW)},
            timeout=60,
        )
    finally:
        os.close(write)
    assert started.returncode == 0 and b"Traceback" not in started.stderr, started.stderr.decode()
