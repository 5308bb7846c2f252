"""Nothing but a real run acts, and the traps a new user meets first: each tried through the command
line (`snakemake`, `python main.py`) as a user would, against the stand-in API and moto's S3."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import API_KEY, update_config
from tests.support.fake_openai import FakeOpenAI
from tests.support.flaky_proxy import FlakyProxy

ROWS = [("fox", "Nature", "a red fox in snow"), ("owl", "Nature", "an owl at dusk"), ("cup", "Kitchen", "a blue cup")]


def sheet(rows=ROWS):
    return "image_id,context,description\r\n" + "".join(f"{i},{c},{d}\r\n" for i, c, d in rows)


@pytest.fixture
def user(keyed):
    """A project with a sheet of its own (mine.csv) and a key for the stand-in."""
    (keyed.root / "mine.csv").write_text(sheet(), newline="")
    return keyed


def made(root):
    return sorted(p.relative_to(root / "results/images").as_posix() for p in (root / "results/images").rglob("*.png"))


def snapshot(root, skip=()):
    """Every file under results/ and .snakemake/ (but Snakemake's own logs and the IO cache a dry run
    leaves for --trust-io-cache, which a run without that flag never reads), with content and mtime."""
    out = {}
    for base in ("results", ".snakemake"):
        for path in (root / base).rglob("*"):
            name = path.relative_to(root).as_posix()
            own = name.startswith((".snakemake/log/", ".snakemake/iocache/")) or "/tmp" in name
            if path.is_file() and not name.startswith(skip) and not own:
                out[name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


# -- 1. main.py: options before or after the sheet; `-- ...` adds to the Snakemake call --------


def test_main_takes_options_after_the_sheet_and_merges_config(user, api):
    estimate = user.main("mine.csv", "--estimate")
    assert estimate.returncode == 0, estimate.output
    assert "3 images from mine.csv" in estimate.output and "estimate: 3 of 3 image(s) to make" in estimate.output
    assert api.calls == [] and not (user.root / "results/images").exists()

    done = user.main("mine.csv", "--cores", "2", "--", "--config", "variant=v2")
    assert done.returncode == 0, done.output[-3000:]
    assert made(user.root) == ["kitchen/cup.png", "nature/fox.png", "nature/owl.png"]
    assert {c["body"]["prompt"] for c in api.calls} == {d for _, _, d in ROWS}
    sidecar = json.loads((user.root / "results/images/nature/fox.json").read_text())
    assert sidecar["variant"] == "v2"

    twice = user.main("mine.csv", "--", "--config", "input_csv=config/example.csv")
    assert twice.returncode == 2 and "the sheet is given twice" in twice.output
    assert "Traceback" not in twice.output


# -- 2. files made for the user honour the umask -----------------------------------------------


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_for_the_user_honour_the_umask(user, mask, mode):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "input_csv=mine.csv"],
        cwd=user.root,
        env=user.env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(mask),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = [p for p in (user.root / "results").rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files) and any(p.name == "_SUCCESS.json" for p in files)
    wrong = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != mode}
    assert wrong == {}
    stored = [p for p in (user.root / "response-store").rglob("*.json") if len(p.parent.name) == 2]
    assert stored and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)  # the store stays private


# -- 3. a dry run beside a live run changes nothing the live run reads --------------------------


def test_a_dry_run_beside_a_live_run_does_not_change_where_it_syncs(user, s3):
    with FakeOpenAI(api_key=API_KEY) as slow:
        user.env.update(s3.env(), OPENAI_BASE_URL=slow.base_url, S3_BUCKET_NAME="mine")
        slow.hold()  # the live run's first call waits until the dry run has ended
        for bucket in ("mine", "other"):
            s3.client().create_bucket(Bucket=bucket)
        live = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--cores",
                "1",
                "--resources",
                "api=1",
                "--config",
                "input_csv=mine.csv",
            ],
            cwd=user.root,
            env=user.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not slow.held() and time.monotonic() < deadline and live.poll() is None:
                time.sleep(0.05)
            assert slow.held(), "the live run never called the API"
            lock_before = (user.root / ".snakemake/image-batch.lock").read_text()
            other = dict(user.env, S3_BUCKET_NAME="other")
            dry = subprocess.run(
                [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "input_csv=mine.csv"],
                cwd=user.root,
                env=other,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert dry.returncode == 0, dry.stdout + dry.stderr
            assert "sync to s3://other/" in dry.stderr
            assert (user.root / ".snakemake/image-batch.lock").read_text() == lock_before
            assert live.poll() is None, "the live run ended before the dry run: nothing was tested"
            slow.release()
            output = live.communicate(timeout=300)[0]
        finally:
            slow.release()
            if live.poll() is None:
                live.kill()
        assert live.returncode == 0, output[-3000:]
    assert len(s3.objects("mine")) == 2 * len(ROWS) + 2 and s3.objects("other") == {}  # + marker, ledger


# -- 4. modes that run no job pay nothing and change nothing a live run reads ------------------


NO_JOB_MODES = [
    ["-n"],
    ["--touch"],
    ["--lint"],
    ["--list-rules"],
    ["--summary"],
    ["--dag"],
    ["--report", "report.html"],
]


@pytest.mark.parametrize("mode", NO_JOB_MODES, ids=lambda m: m[0])
def test_modes_that_run_no_job_pay_nothing_and_change_nothing(user, api, mode):
    update_config(user.root, mode="batch", batch={"poll_seconds": 0.05})
    user.snakemake("--config", "input_csv=mine.csv")  # a real run: everything made and synced
    assert len(api.batches_created) == 1
    if mode[0] != "--report":  # (a report shows images that exist: it is made after a run)
        (user.root / "mine.csv").write_text(sheet(ROWS + [("jug", "Kitchen", "a green jug")]), newline="")
    stop = user.root / "results/logs/STOP.json"
    stop.write_text('{"reason": "a stop flag a live run would read"}')
    before = snapshot(user.root)
    api.reset()
    result = user.snakemake(*mode, "--config", "input_csv=mine.csv", check=False)
    assert result.returncode == 0, result.output[-3000:]
    assert api.calls == [] and api.batch_requests == [] and len(api.batches_created) == 1
    after = snapshot(user.root)
    if mode == ["--touch"]:  # touching outputs' times (and logs) is what --touch is for; no content changes
        touched = {k for k, v in after.items() if k not in before and k.startswith("results/logs/") and not v[0]}
        assert {k: v[0] for k, v in after.items() if k not in touched} == {k: v[0] for k, v in before.items()}
    else:
        assert after == before
    assert not (user.root / "results/images/kitchen/jug.png").exists()


# -- 5. the paid-image guard looks at images that exist ------------------------------------------


def test_an_estimate_with_a_key_does_not_block_a_run_without_one(user, api):
    assert user.main("mine.csv", "--estimate").returncode == 0
    del user.env["AI_API_KEY"]
    done = user.main("mine.csv")
    assert done.returncode == 0, done.output[-3000:]
    assert "OFFLINE" in done.output and len(made(user.root)) == 3 and api.calls == []
    # but images a paid provider made are never replaced by placeholders
    user.env["AI_API_KEY"] = API_KEY
    assert user.main("mine.csv", "--", "--forceall").returncode == 0
    del user.env["AI_API_KEY"]
    refused = user.main("mine.csv")
    assert refused.returncode != 0 and "made by a paid provider" in refused.output
    assert "Traceback" not in refused.output


# -- 6. a paid answer is never lost ----------------------------------------------------------------


def test_a_store_write_that_fails_keeps_the_paid_answer(user, api, s3):
    with FlakyProxy(s3.endpoint_url) as proxy:
        user.env.update(s3.env(), AWS_ENDPOINT_URL=proxy.url)
        s3.client().create_bucket(Bucket="answers")
        update_config(user.root, response_store="s3://answers/store")
        proxy.fail_matching(r"/answers/store/[0-9a-f]{2}/", method="PUT")  # the bucket refuses entries
        done = user.snakemake("--config", "input_csv=mine.csv")
        assert len(made(user.root)) == 3 and len(api.paid_calls) == 3
        assert "could not keep a paid answer" in done.output
        rescued = list((user.root / "response-store-rescue").rglob("*.json"))
        assert len(rescued) == 3
        proxy.heal()
        api.reset()
        user.snakemake("--forcerun", "generate_image", "--config", "input_csv=mine.csv")
        assert api.paid_calls == []  # served from the rescue folder, then moved into the store
        assert not list((user.root / "response-store-rescue").rglob("*.json"))
        assert len([k for k in s3.objects("answers") if k.startswith("store/") and k.count("/") == 2]) == 3


# -- 7. costs survive: the batch price of earlier runs, and after rm -rf results -----------------


def test_batch_and_live_prices_survive_later_runs_and_a_rebuild(user, api):
    update_config(user.root, mode="batch", batch={"poll_seconds": 0.05})
    first = user.snakemake("--config", "input_csv=mine.csv")
    # what this run's batches bought is this run's cost, at the batch price
    assert "3 made (3 paid for, 0 served from the response store)" in first.output
    assert "$0.00 paid in this run" not in first.output
    update_config(user.root, mode="live")
    (user.root / "mine.csv").write_text(sheet(ROWS + [("jug", "Kitchen", "a green jug")]), newline="")
    user.snakemake("--config", "input_csv=mine.csv")
    marker = json.loads((user.root / "results/_SUCCESS.json").read_text())["cost"]
    assert marker["batch_images"] == 3 and marker["images"] == 4 and marker["total"] > 0
    import shutil

    shutil.rmtree(user.root / "results")
    api.reset()
    user.snakemake("--config", "input_csv=mine.csv")
    assert api.calls == [] and api.batch_requests == []
    again = json.loads((user.root / "results/_SUCCESS.json").read_text())["cost"]
    assert again == marker


# -- 8. broken files the workflow reads get clear errors ------------------------------------------


def test_a_broken_batch_state_is_a_clear_error(user, api):
    update_config(user.root, mode="batch")
    state = user.root / "response-store/batches/state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"batches": [')
    result = user.snakemake("--config", "input_csv=mine.csv", check=False)
    assert result.returncode != 0 and "state.json" in result.output and "not valid JSON" in result.output
    assert "Traceback" not in result.output and api.calls == [] and api.batch_requests == []


def test_a_broken_bucket_marker_is_written_again(user, s3):
    user.env.update(s3.env(), S3_BUCKET_NAME="mine")
    s3.client().create_bucket(Bucket="mine")
    user.snakemake("--config", "input_csv=mine.csv")
    s3.client().put_object(Bucket="mine", Key="_SUCCESS.json", Body=b"{broken")
    (user.root / "mine.csv").write_text(sheet(ROWS[:2]), newline="")
    result = user.snakemake("--config", "input_csv=mine.csv")
    assert "Traceback" not in result.output
    assert (
        json.loads(s3.client().get_object(Bucket="mine", Key="_SUCCESS.json")["Body"].read())["counts"]["images"] == 2
    )


# -- 9. signal, not noise ---------------------------------------------------------------------------


def test_sheet_errors_print_as_the_checker_wrote_them(user):
    (user.root / "mine.csv").write_text("image_id,context,description\r\na/b,Nature,x\r\n", newline="")
    result = user.snakemake("--config", "input_csv=mine.csv", check=False)
    assert result.returncode != 0
    assert "mine.csv, line 2, column image_id: image_id 'a/b' is not allowed" in result.output
    assert "common.smk" not in result.output and "WorkflowError" not in result.output
    assert "Traceback" not in result.output


def test_no_per_image_noise_and_a_summary_at_the_end(user, api):
    dry = user.snakemake("-n", "--config", "input_csv=mine.csv")
    assert "provenance/metadata" not in dry.output
    run = user.snakemake("--config", "input_csv=mine.csv")
    tail = run.stderr.strip().splitlines()
    start = max(i for i, line in enumerate(tail) if line.startswith("Image.Batch: summary"))
    summary = "\n".join(tail[start:])
    assert start > len(tail) - 12, "the summary is the run's last word"
    assert "3 made (3 paid for, 0 served from the response store)" in summary and "0 failed" in summary
    assert "cost: $" in summary and "estimate before the run" in summary
    assert "destination: local folder results/bucket/" in summary and "_SUCCESS.json" in summary
    report = user.snakemake("--report", "report.html", "--config", "input_csv=mine.csv")
    assert "Missing metadata" not in report.output and (user.root / "report.html").exists()
    again = user.snakemake("--config", "input_csv=mine.csv")
    assert "nothing to do: all 3 image(s) are made" in again.stderr.strip().splitlines()[-1]


def test_a_long_run_prints_progress_every_few_seconds(user):
    with FakeOpenAI(api_key=API_KEY, latency=0.4) as slow:
        user.env["OPENAI_BASE_URL"] = slow.base_url
        rows = [(f"r{i}", "Nature", f"picture number {i}") for i in range(12)]
        (user.root / "mine.csv").write_text(sheet(rows), newline="")
        update_config(user.root, progress_seconds=0.5)
        run = user.snakemake("--resources", "api=2", "--config", "input_csv=mine.csv")
    lines = [line for line in run.stderr.splitlines() if line.startswith("Image.Batch: progress:")]
    assert len(lines) >= 2, run.stderr[-2000:]
    assert " of 12 image(s)" in lines[-1] and "/s" in lines[-1] and "so far" in lines[-1]


def test_ids_with_dots_are_made_again_when_deleted(user, api):
    rows = [("fox", "Nature", "a fox"), ("fox.v2", "Nature", "a second fox"), ("owl.1", "Nature", "an owl")]
    (user.root / "mine.csv").write_text(sheet(rows), newline="")
    user.snakemake("--config", "input_csv=mine.csv")
    (user.root / "results/images/nature/fox.v2.png").unlink()
    dry = user.snakemake("-n", "--config", "input_csv=mine.csv")
    assert "estimate: 1 of 3 image(s) to make, 1 of them served from the response store" in dry.output
    user.snakemake("--config", "input_csv=mine.csv")
    assert (user.root / "results/images/nature/fox.v2.png").exists() and len(api.paid_calls) == 3


def test_switching_back_to_an_earlier_destination_syncs_what_changed_since(user):
    user.snakemake("--config", "input_csv=mine.csv", "sync={'local_destination': 'out/A'}")
    (user.root / "mine.csv").write_text(sheet(ROWS + [("jug", "Kitchen", "a green jug")]), newline="")
    user.snakemake("--config", "input_csv=mine.csv", "sync={'local_destination': 'out/B'}")
    assert (user.root / "out/B/kitchen/jug.png").exists() and not (user.root / "out/A/kitchen/jug.png").exists()
    back = user.snakemake("--config", "input_csv=mine.csv", "sync={'local_destination': 'out/A'}")
    assert (user.root / "out/A/kitchen/jug.png").exists(), back.output[-2000:]
    assert json.loads((user.root / "out/A/_SUCCESS.json").read_text())["counts"]["images"] == 4


def test_a_refused_run_does_not_claim_there_was_nothing_to_do(user):
    import fcntl

    user.snakemake("--config", "input_csv=mine.csv")
    (user.root / "results/images/nature/fox.png").unlink()
    with open(user.root / ".snakemake/image-batch.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = user.snakemake("--config", "input_csv=mine.csv", check=False)
    assert refused.returncode != 0 and "another Image.Batch run is working in this folder" in refused.output
    assert "nothing to do" not in refused.output
    missing = user.snakemake("--config", "input_csv=mine.csv", "results/images/nature/nothere.png", check=False)
    assert missing.returncode != 0 and "nothing to do" not in missing.output


def test_a_what_if_dry_run_leaves_nothing_stale(user, api):
    user.snakemake("--config", "input_csv=mine.csv")
    what_if = user.snakemake("-n", "--config", "input_csv=mine.csv", "variant=2")
    assert "estimate: 3 of 3 image(s) to make" in what_if.output
    again = user.snakemake("-n", "--config", "input_csv=mine.csv")
    assert "estimate: 0 of 3 image(s) to make" in again.output and "Nothing to be done" in again.output
