"""No dry run (nor estimate, --touch, --lint, report) can change what a live or a later run makes or
pays for, whether it runs beside a live run, before the live run has taken its lock, or is killed
halfway; a live run pays exactly for what it planned. Real `snakemake` processes, the stand-in API
(slowed down so that a live run is still working when a dry run ends), real signals."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from image_batch.common.fileio import HOST
from tests.conftest import API_KEY
from tests.support.fake_openai import FakeOpenAI

ROWS = [(f"r{i}", "Nature" if i % 2 else "Kitchen", f"picture number {i}") for i in range(6)]
WHAT_IF = ("openai={'quality': 'high'}", "variant=what-if")  # other settings: every request differs


def sheet(rows=ROWS):
    return "image_id,context,description\r\n" + "".join(f"{i},{c},{d}\r\n" for i, c, d in rows)


@pytest.fixture
def user(keyed):
    (keyed.root / "mine.csv").write_text(sheet(), newline="")
    return keyed


def listing(root, base="results"):
    """Every file under ``base`` with its bytes and mtime."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in (root / base).rglob("*")
        if p.is_file()
    }


def test_an_image_no_row_asks_for_is_refused_before_anything(user, api):
    """`snakemake results/images/<folder>/<id>.png` for an image not in the sheet: its job would
    have nothing to make it from. One line, exit 2, no call, in a dry run and a real one."""
    absolute = str(user.root / "results/images/nature/r98.json")
    for dry, target in (
        (["-n"], "results/images/nature/r99.png"),
        ([], "./results/images/nature/r99.png"),
        ([], absolute),
    ):
        refused = user.snakemake(*dry, "--config", "input_csv=mine.csv", "--", target, check=False)
        assert refused.returncode == 2, refused.output
        assert f"{target}: no row of mine.csv asks for this image" in refused.output
        assert "Traceback" not in refused.output
    # a sidecar named alone: no declared output (its image's job writes it): one line naming the PNG
    refused = user.snakemake("-n", "--config", "input_csv=mine.csv", "--", "results/images/nature/r1.json", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.output, refused.output
    assert "results/images/nature/r1.json: a sidecar is written by its image's job" in refused.output
    assert "name the image, results/images/nature/r1.png" in refused.output
    assert api.calls == []
    # an image of the sheet, named alone, is made alone
    user.snakemake("--config", "input_csv=mine.csv", "--", "results/images/nature/r1.png")
    assert [call["body"]["prompt"] for call in api.paid_calls] == ["picture number 1"]


class Live:
    """A real `snakemake` run in its own session, its output read as it comes."""

    def __init__(self, runner, *args):
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=runner.root,
            env=runner.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text, seconds=120):
        deadline = time.monotonic() + seconds
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, f"never printed {text!r}:\n" + "".join(self.lines)[-3000:]
            time.sleep(0.02)

    def finish(self, seconds=300):
        self.process.wait(timeout=seconds)
        self.reader.join(timeout=10)
        return "".join(self.lines)

    def kill(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def dry_run(runner, *config):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "input_csv=mine.csv", *config],
        cwd=runner.root,
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result.output = result.stdout + result.stderr
    return result


def qualities(calls):
    return sorted({call["body"]["quality"] for call in calls})


def check_nothing_left_to_pay(user, api, paid):
    """A plain run after: pays nothing more, makes nothing, says there was nothing to do."""
    dry = dry_run(user)
    assert "estimate: 0 of 6 image(s) to make" in dry.output and "Nothing to be done" in dry.output, dry.output
    again = user.snakemake("--config", "input_csv=mine.csv")
    assert len(api.paid_calls) == paid, again.output[-3000:]
    assert "nothing to do: all 6 image(s) are made" in again.output, again.output[-3000:]


@pytest.mark.parametrize("when", ["while-it-makes-images", "before-it-takes-its-lock"])
def test_a_what_if_dry_run_beside_a_live_run_changes_nothing_it_makes(user, when):
    """A dry run with other settings, while a live run is making images or before the live run has
    even taken its lock (both started at once): the live run makes every image at its own settings,
    and the next plain run pays nothing and does nothing."""
    with FakeOpenAI(api_key=API_KEY, latency=0.2) as slow:
        user.env["OPENAI_BASE_URL"] = slow.base_url
        slow.hold()  # the live run's first call waits for the dry run to end: it is surely still working
        live = Live(user, "--cores", "1", "--resources", "api=1", "--config", "input_csv=mine.csv")
        try:
            if when == "while-it-makes-images":
                deadline = time.monotonic() + 120
                while not slow.held():
                    assert live.process.poll() is None and time.monotonic() < deadline, "".join(live.lines)
                    time.sleep(0.02)
            dry = dry_run(user, *WHAT_IF)
            assert dry.returncode == 0 and "Traceback" not in dry.output, dry.output[-3000:]
            assert "estimate: 6 of 6 image(s) to make" in dry.output
            assert live.process.poll() is None, "the live run ended before the dry run: nothing was tested"
            slow.release()
            output = live.finish()
        finally:
            slow.release()
            live.kill()
        assert live.process.returncode == 0, output[-3000:]
        assert "6 made (6 paid for" in output, output[-3000:]
        assert len(slow.paid_calls) == 6 and qualities(slow.paid_calls) == ["medium"]
        assert all("variant" not in call["body"] for call in slow.calls)
        check_nothing_left_to_pay(user, slow, paid=6)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_dry_run_killed_halfway_changes_nothing(user, api, sig):
    """A what-if dry run stopped in the middle (after planning, while Snakemake builds its DAG)
    leaves results/ exactly as it was: the next plain run pays nothing and does nothing."""
    user.snakemake("--config", "input_csv=mine.csv")
    paid = len(api.paid_calls)
    # a large what-if sheet: planned, then a long DAG to build, in which the dry run is stopped
    rows = ROWS + [(f"x{i}", "Nature", f"extra picture {i}") for i in range(1500)]
    (user.root / "mine.csv").write_text(sheet(rows), newline="")
    before = listing(user.root)
    dry = Live(user, "-n", "--cores", "1", "--config", "input_csv=mine.csv", *WHAT_IF)
    try:
        dry.wait_for("Image.Batch: estimate: 1506 of 1506 image(s) to make")
        os.killpg(dry.process.pid, sig)
        output = dry.finish(seconds=60)
    finally:
        dry.kill()
    assert "This was a dry-run" not in output, "the dry run ended before it was stopped: nothing was tested"
    assert listing(user.root) == before
    (user.root / "mine.csv").write_text(sheet(), newline="")
    check_nothing_left_to_pay(user, api, paid=paid)


def test_a_live_run_starting_beside_a_dry_run_does_not_break_it(user, api):
    """Both started at once, the dry run with other settings: it ends cleanly (a live run's start
    removes only dead writers' temp files: a live process's, here the test's own, stay)."""
    mine = user.root / "results/specs/nature/.r1.json.{}.{}.abc.part"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive_part = mine.parent / mine.name.format(HOST, os.getpid())
    dead_part = mine.parent / mine.name.format(HOST, dead.stdout.strip())
    alive_part.parent.mkdir(parents=True)
    alive_part.write_text("being written")
    dead_part.write_text("left by a dead writer")
    live = Live(user, "--cores", "2", "--config", "input_csv=mine.csv")
    try:
        dry = dry_run(user, *WHAT_IF)
        output = live.finish()
    finally:
        live.kill()
    assert dry.returncode == 0 and "Traceback" not in dry.output, dry.output[-3000:]
    assert live.process.returncode == 0, output[-3000:]
    assert alive_part.exists() and not dead_part.exists()
    assert qualities(api.paid_calls) == ["medium"] and len(api.paid_calls) == 6


def test_going_back_to_an_earlier_request_makes_the_image_again(user, api):
    """A, then B, then A: each time the images are made from the current request (the second A
    from the response store), never left as B's images behind A's old request file."""

    def made_from():
        sidecars = [json.loads(p.read_text()) for p in (user.root / "results/images").rglob("*.json")]
        return sorted({s.get("variant", "") for s in sidecars})

    user.snakemake("--config", "input_csv=mine.csv")
    assert made_from() == [""] and len(api.paid_calls) == 6
    b = user.snakemake("--config", "input_csv=mine.csv", "variant=b")
    assert made_from() == ["b"] and len(api.paid_calls) == 12, b.output[-3000:]
    back = user.snakemake("--config", "input_csv=mine.csv")
    assert made_from() == [""] and len(api.paid_calls) == 12, back.output[-3000:]
    assert "6 made (0 paid for, 6 served from the response store)" in back.output
    for sidecar in (user.root / "results/images").rglob("*.json"):
        (request,) = (user.root / "results/specs" / sidecar.parent.name).glob(f"{sidecar.stem}.*.json")
        assert json.loads(sidecar.read_text())["request_sha256"] == hashlib.sha256(request.read_bytes()).hexdigest()


def test_an_edited_row_makes_that_image_stale_and_a_dry_run_writes_nothing(user, api):
    user.snakemake("--config", "input_csv=mine.csv")
    edited = [(i, c, "a changed picture" if i == "r3" else d) for i, c, d in ROWS]
    (user.root / "mine.csv").write_text(sheet(edited), newline="")
    before = listing(user.root)
    dry = dry_run(user)
    assert "estimate: 1 of 6 image(s) to make" in dry.output
    assert listing(user.root) == before
    run = user.snakemake("--config", "input_csv=mine.csv")
    assert "1 to make, 1 made (1 paid for" in run.output, run.output[-3000:]
    assert [call["body"]["prompt"] for call in api.paid_calls[6:]] == ["a changed picture"]


def job_counts(runner):
    """{rule: count} from the job stats of a dry run (--verbose: the workflow quietens them)."""
    counts, table = {}, False
    for line in dry_run(runner, "--verbose").output.splitlines():
        if line.startswith("Job stats:"):
            table = True
        elif table and len(line.split()) == 2 and line.split()[1].isdigit():
            counts[line.split()[0]] = int(line.split()[1])
        elif table and not line.strip() and counts:
            break
    return counts


def test_a_new_image_is_one_job_and_a_changed_one_two(user, api):
    """A new image's job writes its own request file (no write_request job); an image that exists
    and whose row changed gets its new request file from write_request first; an up-to-date image
    is no job. Each image's one request file is what its sidecar says it was made from."""
    fresh = job_counts(user)
    assert fresh["generate_image"] == 6 and "write_request" not in fresh, fresh
    user.snakemake("--config", "input_csv=mine.csv")
    edited = [(i, c, "a changed picture" if i == "r3" else d) for i, c, d in ROWS]
    (user.root / "mine.csv").write_text(sheet(edited), newline="")
    (png,) = (user.root / "results/images").rglob("r1.png")
    png.unlink()  # its request file is there: the job finds it
    counts = job_counts(user)
    assert counts["generate_image"] == 2 and counts["write_request"] == 1, counts
    run = user.snakemake("--config", "input_csv=mine.csv")
    assert "2 to make, 2 made (1 paid for, 1 served from the response store)" in run.output, run.output[-3000:]
    for sidecar in (user.root / "results/images").rglob("*.json"):
        (request,) = (user.root / "results/specs" / sidecar.parent.name).glob(f"{sidecar.stem}.*.json")
        assert json.loads(sidecar.read_text())["request_sha256"] == hashlib.sha256(request.read_bytes()).hexdigest()
        assert request.stat().st_mtime <= sidecar.with_suffix(".png").stat().st_mtime  # written first
    assert "Nothing to be done" in dry_run(user).output
