"""Batch mode end to end: `snakemake --config mode=batch` against the stand-in's Batch API."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from image_batch.default_plugins.openai_images import OpenAIImagesProvider
from image_batch.images.batch import BatchRunner, input_files
from tests.conftest import API_KEY, FAST_RETRY, copy_workflow, settings_for, update_config
from tests.support.fake_openai import FakeOpenAI

CREATED = 1_790_000_000


def sheet(rows):
    return "image_id,context,description\r\n" + "".join(f"{i},{c},{d}\r\n" for i, c, d in rows)


ROWS = [(f"b{i}", "Lakes" if i % 2 else "Hills", f"batch prompt {i}: a calm lake at dawn") for i in range(5)]


@pytest.fixture
def api():
    with FakeOpenAI(api_key=API_KEY, fixed_created=CREATED) as server:
        yield server


def project(runner, api, rows=ROWS, mode="batch"):
    runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
    update_config(runner.root, mode=mode, batch={"poll_seconds": 0.02}, retry=FAST_RETRY)
    (runner.root / "input.csv").write_text(sheet(rows), newline="")
    return runner


def outputs(root):
    found = {}
    for path in sorted((root / "results/images").rglob("*")):
        if path.is_file():
            rel = path.relative_to(root / "results/images").as_posix()
            found[rel] = json.loads(path.read_text()) if path.suffix == ".json" else path.read_bytes()
    return found


def test_batch_run_submits_once_matches_live_and_adds_only_new_rows(runner, api, tmp_path):
    batch = project(runner, api)
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert "submitted batch" in (batch.root / "results/logs/batch.log").read_text()
    assert len(api.batches_created) == 1 and api.batch_lines_answered == len(ROWS)
    assert api.calls == []  # not one full-price call
    assert "estimate: 5 of 5 image(s) to make" in result.output and "in batch mode" in result.output
    marker = json.loads((batch.root / "results/_SUCCESS.json").read_text())
    assert marker["cost"]["batch_images"] == len(ROWS) and marker["cost"]["total"] > 0
    assert set(marker["cost"]["per_context"]) == {"Lakes", "Hills"}
    assert "cost: $" in (batch.root / "results/logs/sync.log").read_text()

    # the same rows in live mode, in another folder with its own response store
    live_root = copy_workflow(tmp_path / "live")
    live = type(runner)(live_root, dict(runner.env))
    project(live, api, mode="live")
    live.snakemake("--config", "input_csv=input.csv")
    assert len(api.paid_calls) == len(ROWS)
    live_cost = json.loads((live_root / "results/_SUCCESS.json").read_text())["cost"]
    assert live_cost["batch_images"] == 0 and live_cost["total"] == pytest.approx(2 * marker["cost"]["total"], abs=1e-5)
    from_batch, from_live = outputs(batch.root), outputs(live_root)
    assert from_batch.keys() == from_live.keys() and len(from_batch) == 2 * len(ROWS)
    batch_ids = {line["request_id"] for line in api.batch_lines}
    for name, value in from_batch.items():
        if name.endswith(".png"):
            assert value == from_live[name], name
        else:  # each response has its own request id; everything else is the same
            assert value.pop("request_id") in batch_ids
            from_live[name].pop("request_id")
            batch_cost, live_cost_each = value.pop("cost"), from_live[name].pop("cost")
            assert (batch_cost["price"], live_cost_each["price"]) == ("batch", "live")
            assert batch_cost["usd"] == pytest.approx(live_cost_each["usd"] / 2)
            assert value == from_live[name], name

    # two new rows later: one more batch, of exactly those two; the old images are not touched
    before = {p: p.stat().st_mtime_ns for p in (batch.root / "results/images").rglob("*.png")}
    more = ROWS + [("n1", "Lakes", "a new row"), ("n2", "Hills", "another new row")]
    (batch.root / "input.csv").write_text(sheet(more), newline="")
    dry = batch.snakemake("-n", "--verbose", "--config", "input_csv=input.csv")  # --verbose: job blocks too
    assert "estimate: 2 of 7 image(s) to make, 0 of them served from the response store" in dry.output
    # 2 images x (1,756 image tokens x $30/M + a few text tokens x $5/M) / 2, from the store's own usage
    assert "$0.05 in batch mode" in dry.output and "from the mean usage of your 5 stored answer(s)" in dry.output
    estimate = batch.main("--estimate", "input.csv")
    assert estimate.returncode == 0 and "2 to pay for: about $0.11 live, $0.05 in batch mode" in estimate.output
    assert dry.output.count("rule generate_image") == 2 and len(api.batches_created) == 1  # a dry run submits nothing
    batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 2 and api.batch_lines_answered == len(ROWS) + 2
    assert {line["body"]["prompt"] for line in api.batch_lines[-2:]} == {"a new row", "another new row"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert len(outputs(batch.root)) == 2 * len(more)

    # nothing left to do: no batch, no call
    again = batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 2 and "Nothing to be done" in again.output
    # images already made are never paid for again, even with the response store gone
    shutil.rmtree(batch.root / "response-store")
    batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 2 and api.batch_lines_answered == len(ROWS) + 2


def test_refused_line_fails_its_row_with_the_reason(runner, api):
    """Two lines refused (their error lines in any order, matched to rows by custom_id): each of
    those rows fails with its reason, the others are made."""
    batch = project(runner, api)
    api.set_behavior("prompt 3", "moderation")
    api.set_behavior("prompt 0", "moderation")
    result = batch.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    assert "b3" in result.output and "b0" in result.output and "moderation_blocked" in result.output
    assert api.calls == [] and len(api.batches_created) == 1
    made = outputs(batch.root)
    assert len(made) == 2 * (len(ROWS) - 2) and "lakes/b3.png" not in made and "hills/b0.png" not in made
    for failed in ("lakes/b3", "hills/b0"):
        record = json.loads((batch.root / f"results/logs/failures/{failed}.json").read_text())
        assert record["disposition"] == "refused" and "safety system" in record["reason"]
    assert sorted(
        p.relative_to(batch.root / "results/logs/failures").as_posix()
        for p in (batch.root / "results/logs/failures").rglob("*.json")
    ) == ["hills/b0.json", "lakes/b3.json"]


def test_expired_batch_submits_only_the_lines_not_run(runner, api):
    batch = project(runner, api)
    api.expire_batches_after_lines = 2  # each batch runs 2 lines, then expires
    batch.snakemake("--config", "input_csv=input.csv")
    # 5 rows: 2 done + 3 expired, then 2 + 1, then 1: three batches, no line answered twice
    assert [api.batch(b)["status"] for b in api.batches_created] == ["expired", "expired", "completed"]
    assert api.batch_lines_answered == len(ROWS)
    assert len({line["custom_id"] for line in api.batch_lines}) == len(ROWS)
    assert len(outputs(batch.root)) == 2 * len(ROWS)


def test_kill_9_while_polling_resumes_the_same_batch(runner, api):
    api.batch_polls_to_complete = 1_000_000  # the batch runs until the test lets it end (no timing to guess)
    batch = project(runner, api)
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "4", "--config", "input_csv=input.csv"],
        cwd=batch.root,
        env=batch.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    state = batch.root / "response-store/batches/state.json"
    deadline = time.monotonic() + 60

    def polling():
        polls = [r for r in api.batch_requests if r["method"] == "GET" and r["path"].startswith("/v1/batches/batch_")]
        return state.exists() and any(b.get("id") for b in json.loads(state.read_text())["batches"]) and polls

    while not polling():
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert len(api.batches_created) == 1 and not (batch.root / "results/images").exists()
    api.complete_batches_after(1)

    result = batch.main("input.csv")
    assert result.returncode == 0, result.output[-3000:]
    assert len(api.batches_created) == 1 and api.batch_lines_answered == len(ROWS)
    assert "submitted by an earlier run" in (batch.root / "results/logs/batch.log").read_text()
    assert len(outputs(batch.root)) == 2 * len(ROWS) and api.calls == []


def row_specs(api):
    """The specs of ROWS, as planning makes them for the stand-in's endpoint."""
    request = {"provider": "openai", "endpoint": "images/generations", "base_url": api.base_url}
    request["model"] = "gpt-image-2.5-sunburst"
    return [{"image_id": i, "context": c, "folder": c.lower(), "request": {**request, "prompt": d}} for i, c, d in ROWS]


def test_a_create_answer_lost_is_retried_by_looking_not_by_creating_again(tmp_path, api, monkeypatch):
    """The API creates the batch but its answer is lost (a 500): the retry finds the batch by its
    digest instead of creating a second one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    config = settings_for(batch={"poll_seconds": 0.01}, retry=FAST_RETRY)
    specs = row_specs(api)
    logs = []
    api.fail_next("batch_create", after=True)
    result = BatchRunner(config, logs.append).run(specs)
    assert len(api.batches_created) == 1, "a second batch was submitted for the same requests"
    assert result["stored"] == len(ROWS) and not result["failed"]
    assert any("creating a batch failed" in line for line in logs)
    assert any("was created although its answer was lost" in line for line in logs)


def test_a_batch_a_run_was_creating_long_ago_is_still_found(tmp_path, api, monkeypatch):
    """Recovery has no time limit short of the API's retention: a run killed while creating a batch
    30 hours ago (longer than a batch's 24 h window) is found again, not submitted twice."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    config = settings_for(batch={"poll_seconds": 0.01}, retry=FAST_RETRY)
    specs = row_specs(api)
    api.batch_created_offset = -30 * 3600
    api.fail_next("batch_create", "forbidden", after=True)  # created; the answer (not one to retry) is lost
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for the lost answer
        BatchRunner(config, lambda m: None).run(specs)
    state_path = tmp_path / "response-store/batches/state.json"
    state = json.loads(state_path.read_text())
    state["batches"][0]["started_at"] -= 30 * 3600  # that run was 30 hours ago
    state_path.write_text(json.dumps(state))
    api.batch_created_offset = 0
    logs = []
    result = BatchRunner(config, logs.append).run(specs)
    assert len(api.batches_created) == 1, "the batch of 30 hours ago was submitted again"
    assert result["stored"] == len(ROWS) and any("created by an earlier run" in line for line in logs)


def test_input_files_split_at_the_limits():
    provider = OpenAIImagesProvider({"model": "m"})
    requests = {f"k{i}": {"model": "m", "prompt": "p" * 100, "size": "1024x1024"} for i in range(10)}
    files = input_files(requests, provider, max_lines=4, max_bytes=10**6)
    assert [len(keys) for _, keys in files] == [4, 4, 2]
    line = json.loads(files[0][0].splitlines()[0])
    assert line == {
        "custom_id": "k0",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "m", "prompt": "p" * 100, "n": 1, "size": "1024x1024"},
    }
    limit = 3 * (len(files[0][0].splitlines()[0]) + 1)  # three lines with their newlines
    by_bytes = input_files(requests, provider, max_lines=50000, max_bytes=limit)
    assert [len(keys) for _, keys in by_bytes] == [3, 3, 3, 1]
    assert all(len(content) <= limit for content, _ in by_bytes)


def test_an_answer_in_the_rescue_folder_is_not_submitted_again(tmp_path, api, monkeypatch):
    from image_batch.images import store as store_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
    monkeypatch.setattr(store_module, "RESCUE_ROOTS", (tmp_path / "rescue",))
    monkeypatch.setattr(store_module, "_rescue_seen", [0.0, ()])
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)

    def disk_full(self, key, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.ResponseStore, "_put_bytes", disk_full)
    config = settings_for(batch={"poll_seconds": 0.01})
    specs = row_specs(api)
    BatchRunner(config, lambda m: None).run(specs)
    assert len(list((tmp_path / "rescue").rglob("*.json"))) == len(ROWS)  # kept, although the store failed
    assert len(api.batches_created) == 1, f"{len(api.batches_created)} batches: rescued answers were paid again"
