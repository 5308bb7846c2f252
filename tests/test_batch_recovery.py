"""Batches are never forgotten, survive network faults, and every request is paid (and counted) once:
end to end, real `snakemake` processes against the stand-in's Batch API, real signals."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import openai
import pytest

from image_batch.costs.bill import money
from tests.conftest import API_KEY, FAST_RETRY, update_config
from tests.support.fake_openai import FakeOpenAI
from tests.test_batch_mode import CREATED, ROWS, outputs, project
from tests.test_describe import described  # noqa: F401 (a fixture)
from tests.test_gemini import gem, gemini  # noqa: F401 (fixtures)

STATE = "response-store/batches/state.json"


@pytest.fixture
def api():
    with FakeOpenAI(api_key=API_KEY, fixed_created=CREATED) as server:
        yield server


def start(batch, *config):
    """A real `snakemake` run in the background, in its own process group (for real signals); what
    it prints goes to ``run.log`` beside the project."""
    with open(batch.root.parent / "run.log", "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--cores", "4", "--config", "input_csv=input.csv", *config],
            cwd=batch.root,
            env=batch.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(check, run, what):
    deadline = time.monotonic() + 120
    while not check():
        assert run.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def recorded(root):
    path = root / STATE
    return json.loads(path.read_text())["batches"] if path.exists() else []


def polled(api):
    return any(r["path"].startswith("/v1/batches/batch_") and r["method"] == "GET" for r in api.batch_requests)


def signal_and_wait(run, sig):
    """Send ``sig`` to the run's process group and wait for it; its exit code. A run still alive a
    minute later is killed (never left polling behind the test) and the test fails."""
    os.killpg(run.pid, sig)
    try:
        return run.wait(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def stop_while_waiting(batch, api, sig=signal.SIGINT):
    """A batch-mode run stopped by a real signal while it waits for its batch (the user will not wait)."""
    api.batch_polls_to_complete = 1_000_000
    run = start(batch)
    wait_until(lambda: any(e.get("id") for e in recorded(batch.root)) and polled(api), run, "the batch was polled")
    code = signal_and_wait(run, sig)
    assert code == 128 + sig  # a clear stop (SIGTERM too: Snakemake's handler alone would wait on)
    said = (batch.root.parent / "run.log").read_text()
    stopped = [line for line in said.splitlines() if "Image.Batch: stopped" in line]
    assert len(stopped) == 1 and "while waiting for the batches" in stopped[0], said[-3000:]
    assert "Traceback" not in said
    assert len(api.batches_created) == 1 and not (batch.root / "results/images").exists()
    return api.batches_created[0]


def paid_once(api):
    """Every prompt paid for at most once, live calls and batch lines together; how many were paid."""
    paid = [c["body"]["prompt"] for c in api.paid_calls] + [line["body"]["prompt"] for line in api.batch_paid_lines]
    assert len(paid) == len(set(paid)), f"paid twice: {sorted(p for p in paid if paid.count(p) > 1)}"
    return len(paid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_batch_given_up_on_is_not_paid_again_in_live_mode(runner, api, sig):
    batch = project(runner, api)
    batch_id = stop_while_waiting(batch, api, sig)
    # the same sheet in live mode: the estimate says the batch covers the rows; nothing is paid twice
    project(batch, api, mode="live")
    dry = batch.snakemake("-n", "--config", "input_csv=input.csv")
    assert "0 to pay for" in dry.output and "5 request(s) are in batches submitted earlier" in dry.output
    # what collecting them costs (billed once, by the Batch API) is said, and the summary compares with it
    [committed] = re.findall(r"not paid again \(about (\$[0-9.]+) at the batch price", dry.output)
    assert committed != money(0)
    api.complete_batches_after(3)  # the batch ends while the live run waits for it
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert f"paid in this run; estimate before the run: {committed} (+0%)" in result.output, result.output[-2000:]
    assert paid_once(api) == len(ROWS) and api.paid_calls == [] and len(api.batches_created) == 1
    assert f"5 image(s) are in batch {batch_id}" in result.output and "waiting for it" in result.output
    made = outputs(batch.root)
    assert len(made) == 2 * len(ROWS)
    assert all(v["cost"]["price"] == "batch" for k, v in made.items() if k.endswith(".json"))
    assert "(5 paid for, 0 served from the response store" in result.output
    assert all(e["collected"] for e in recorded(batch.root))


def test_live_mode_can_cancel_a_running_batch_and_pays_only_the_lines_it_did_not_run(runner, api):
    batch = project(runner, api)
    api.batch_polls_to_complete = 1_000_000
    run = start(batch)
    wait_until(lambda: any(e.get("id") for e in recorded(batch.root)) and polled(api), run, "the batch was polled")
    signal_and_wait(run, signal.SIGINT)
    [batch_id] = api.batches_created
    api.complete_batches_after(3)
    openai.OpenAI(api_key=API_KEY, base_url=api.base_url).batches.retrieve(batch_id)  # some lines are answered
    project(batch, api, mode="live")
    result = batch.snakemake("--config", "input_csv=input.csv", "batch={abandon: true, poll_seconds: 0.02}")
    assert "cancelled it (batch.abandon)" in result.output and api.batch(batch_id)["status"] == "cancelled"
    in_batch = len(api.batch_paid_lines)
    assert 0 < in_batch < len(ROWS) and len(api.paid_calls) == len(ROWS) - in_batch
    assert paid_once(api) == len(ROWS) and len(outputs(batch.root)) == 2 * len(ROWS)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_batch_state_survives_rm_rf_results(runner, api, s3, where):
    """A batch run stopped (SIGINT) while polling, then `rm -rf results`, then run again: the same
    batch is polled, none is submitted twice (with the store in S3, the state stays outside results/)."""
    batch = project(runner, api)
    if where == "s3":
        batch.env.update(s3.env())
        s3.client().create_bucket(Bucket="answers")
        update_config(batch.root, response_store="s3://answers/store")
    stop_while_waiting(batch, api)
    shutil.rmtree(batch.root / "results")
    api.complete_batches_after(1)
    batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 1 and paid_once(api) == len(ROWS) and api.calls == []
    assert len(outputs(batch.root)) == 2 * len(ROWS) and (batch.root / STATE).exists()
    if where == "s3":  # the answers went to the S3 store
        assert s3.client().list_objects_v2(Bucket="answers", Prefix="store/")["KeyCount"] >= len(ROWS)


def test_a_later_batch_run_collects_a_batch_that_ended_meanwhile(runner, api):
    batch = project(runner, api)
    batch_id = stop_while_waiting(batch, api)
    api.complete_batches_after(1)
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 1 and paid_once(api) == len(ROWS) and api.calls == []
    assert f"batch {batch_id} was submitted by an earlier run" in result.output
    assert len(outputs(batch.root)) == 2 * len(ROWS)
    again = batch.snakemake("--config", "input_csv=input.csv")
    assert "Nothing to be done" in again.output and len(api.batches_created) == 1


def test_a_batch_killed_while_being_created_is_found_not_submitted_twice(runner, api):
    """SIGKILL while the create call is in flight: the API has made the batch, the run never heard."""
    batch = project(runner, api)
    api.batch_create_delay = 30
    run = start(batch)
    wait_until(lambda: len(api.batches_created) == 1, run, "the batch was created")
    signal_and_wait(run, signal.SIGKILL)
    assert [e["status"] for e in recorded(batch.root)] == ["submitting"]  # created, not recorded
    api.batch_create_delay = 0
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 1, "the batch was submitted twice"
    assert "created by an earlier run that was stopped" in result.output
    assert paid_once(api) == len(ROWS) and len(outputs(batch.root)) == 2 * len(ROWS)


def test_network_faults_while_submitting_and_polling_do_not_end_the_run(runner, api):
    batch = project(runner, api)
    api.batch_polls_to_complete = 3
    api.fail_next("file_create", "server_error")
    api.fail_next("batch_create", "rate_limit")
    api.fail_next("batch_create", "reset", after=True)  # created, the answer lost: found, not made again
    api.fail_next("batch_retrieve", "overloaded")
    api.fail_next("batch_retrieve", "reset")
    api.fail_next("batch_retrieve", "rate_limit")
    api.fail_next("file_content", "bad_gateway")
    result = batch.snakemake("--config", "input_csv=input.csv")
    log = (batch.root / "results/logs/batch.log").read_text()
    assert "uploading a batch input file failed" in log and "creating a batch failed" in log
    assert "polling batch_" in log and "downloading file-" in log
    assert len(api.batches_created) == 1 and paid_once(api) == len(ROWS) and api.calls == []
    assert len(outputs(batch.root)) == 2 * len(ROWS) and "Traceback" not in result.output


def test_an_outage_longer_than_the_retry_budget_while_polling_is_waited_out(runner, api):
    """A 24-hour wait outlives an outage that exhausts retry.max_attempts for one poll: the batch is
    polled again later (not a stopped run), and nothing is submitted twice."""
    batch = project(runner, api)
    api.batch_polls_to_complete = 2
    api.fail_next("batch_retrieve", "bad_gateway", n=3 * FAST_RETRY["max_attempts"])
    result = batch.snakemake("--config", "input_csv=input.csv")
    log = (batch.root / "results/logs/batch.log").read_text()
    assert "polling again later" in log and "batch mode stopped" not in result.output
    assert len(api.batches_created) == 1 and paid_once(api) == len(ROWS) and api.calls == []
    assert len(outputs(batch.root)) == 2 * len(ROWS) and "Traceback" not in result.output


def test_a_batch_the_api_no_longer_knows_is_marked_gone_once(runner, api):
    batch = project(runner, api)
    gone = stop_while_waiting(batch, api)
    api.forget_batch(gone)
    api.complete_batches_after(1)
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert result.output.count(f"batch {gone}") >= 1 and result.output.count("unknown to the API (404)") == 1
    assert [e["status"] for e in recorded(batch.root)][0] == "gone"
    assert len(api.batches_created) == 2 and len(outputs(batch.root)) == 2 * len(ROWS)
    again = batch.snakemake("--config", "input_csv=input.csv")
    assert "Nothing to be done" in again.output and "404" not in again.output


@pytest.mark.parametrize("mode", ["batch", "live"])
def test_a_batch_whose_answers_file_is_gone_is_not_a_dead_end(runner, api, mode):
    """A batch an earlier run left, ended, its output file deleted (or expired) at the API before a
    run collected it: one line names it, its requests are asked for again (batch mode: the next
    round; live mode: the live jobs), and no later run is stopped by it."""
    batch = project(runner, api)
    gone = stop_while_waiting(batch, api)
    client = openai.OpenAI(api_key=API_KEY, base_url=api.base_url)
    api.complete_batches_after(1)
    output_file = client.batches.retrieve(gone).output_file_id
    client.files.delete(output_file)
    project(batch, api, mode=mode)
    result = batch.snakemake("--config", "input_csv=input.csv")
    said = [line for line in result.output.splitlines() if output_file in line]
    assert len(said) == 1 and "unknown to the API (404)" in said[0] and gone in said[0], result.output[-3000:]
    assert "OPENAI_BASE_URL" not in result.output and "Traceback" not in result.output
    assert len(outputs(batch.root)) == 2 * len(ROWS)
    assert len(api.batches_created) == (2 if mode == "batch" else 1)
    assert all(e["collected"] for e in recorded(batch.root))
    again = batch.snakemake("--config", "input_csv=input.csv")
    assert "Nothing to be done" in again.output and "404" not in again.output


def test_a_timed_out_line_goes_into_the_next_round(runner, api):
    batch = project(runner, api)
    api.fail_batch_lines("prompt 3", "request_timeout")
    batch.snakemake("--config", "input_csv=input.csv")
    assert len(api.batches_created) == 2 and len(outputs(batch.root)) == 2 * len(ROWS)
    second = [line for line in api.batch_lines if line["batch_id"] == api.batches_created[1]]
    assert [line["body"]["prompt"] for line in second] == [ROWS[3][2]]
    assert paid_once(api) == len(ROWS)


def test_a_refused_line_names_the_parameter(runner, api):
    batch = project(runner, api)
    update_config(batch.root, openai={"extra_body": {"frobnicate": 1}})
    result = batch.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0 and len(api.batches_created) == 1
    assert "(unknown_parameter) (param: frobnicate)" in result.output
    record = json.loads((batch.root / "results/logs/failures/lakes/b3.json").read_text())
    assert "(param: frobnicate)" in record["reason"]


def test_lines_of_a_batch_cancelled_meanwhile_go_again(runner, api):
    batch = project(runner, api)
    api.batch_polls_to_complete = 1_000_000  # the first batch runs until it is cancelled (never by timing)
    run = start(batch)
    wait_until(lambda: polled(api), run, "the batch was polled")
    [first] = api.batches_created
    api.batch_polls_to_complete = 1  # the batch its lines go into next completes
    openai.OpenAI(api_key=API_KEY, base_url=api.base_url).batches.cancel(first)  # e.g. from the dashboard
    assert run.wait(timeout=120) == 0
    assert api.batch(first)["status"] == "cancelled" and len(api.batches_created) == 2
    assert paid_once(api) == len(ROWS) and api.calls == [] and len(outputs(batch.root)) == 2 * len(ROWS)


SHARED = [("s1", "Lakes", "one and the same lake"), ("s2", "Lakes", "one and the same lake")]
SHARED += [("s3", "Hills", "one and the same lake"), ("t1", "Hills", "a different hill")]


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_rows_sharing_a_request_are_paid_and_counted_once(runner, api, mode):
    batch = project(runner, api, rows=SHARED, mode=mode)
    dry = batch.snakemake("-n", "--config", "input_csv=input.csv")
    assert "4 of 4 image(s) to make, 0 of them served from the response store (no cost), 2 to pay for" in dry.output
    result = batch.snakemake("--config", "input_csv=input.csv")
    assert paid_once(api) == 2
    assert "4 made (2 paid for, 2 served from the response store" in result.output
    made = outputs(batch.root)
    each = {name: value["cost"]["usd"] for name, value in made.items() if name.endswith(".json")}
    marker = json.loads((batch.root / "results/_SUCCESS.json").read_text())["cost"]
    assert marker["total"] == pytest.approx(each["lakes/s1.json"] + each["hills/t1.json"], abs=1e-6)
    # the shared answer is counted for the first of its rows by context and image id: hills/s3
    assert marker["per_context"]["Hills"]["cost"] == pytest.approx(each["hills/s3.json"] + each["hills/t1.json"])
    assert marker["per_context"]["Lakes"]["cost"] == 0 and marker["shared"] == 2
    assert f"cost: {money(marker['total'])} paid in this run" in result.output


def test_a_gemini_batch_whose_results_file_is_gone_is_not_a_dead_end(gem, gemini):  # noqa: F811
    """A Gemini batch an earlier run left, ended with its results in a file the API no longer has
    (deleted, or no longer kept): one line, its requests made live, and no later run stopped by it."""
    from tests.test_gemini import _batch_state, _stop_a_waiting_batch_run

    gemini.results_as_file = True
    _stop_a_waiting_batch_run(gem, gemini, signal.SIGINT)
    from google import genai
    from google.genai import types

    from tests.test_gemini import KEY

    [entry] = _batch_state(gem.root)["batches"]
    gemini.batch_polls_to_complete = 1
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gemini.base_url, api_version="v1beta"))
    done = client.batches.get(name=entry["id"])  # it ends: its results are written to a file
    assert done.dest and done.dest.file_name and gemini.files
    gemini.files.clear()  # deleted at Google, or no longer kept there, before a run collected them
    update_config(gem.root, mode="live")
    result = gem.snakemake()
    said = [line for line in result.output.splitlines() if "unknown to the API (404)" in line]
    assert len(said) == 1 and entry["id"] in said[0], result.output[-3000:]
    assert "gemini.model" not in result.output and "Traceback" not in result.output
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4
    assert _batch_state(gem.root)["batches"][0]["collected"]
    again = gem.snakemake()
    assert "Nothing to be done" in again.output and "404" not in again.output


def test_a_prompt_batch_given_up_on_is_not_paid_again_in_live_mode(described, api):  # noqa: F811
    """describe: on. A batch-mode run stopped (SIGINT) while its prompts' batch (/v1/responses lines)
    waits, then the same sheet in live mode: the prompts' batch is waited for and collected, no
    prompt is written (paid) again live, and the images are made live from the written prompts."""
    from tests.test_describe import ROWS as DESCRIBED
    from tests.test_describe import check_outputs

    root = described.root
    update_config(root, mode="batch", batch={"poll_seconds": 0.02})
    api.batch_polls_to_complete = 1_000_000
    run = start(described)
    wait_until(lambda: any(e.get("id") for e in recorded(root)) and polled(api), run, "the prompts' batch was polled")
    assert signal_and_wait(run, signal.SIGINT) == 130
    [batch_id] = api.batches_created
    update_config(root, mode="live")
    dry = described.snakemake("-n")
    assert f"; {len(DESCRIBED)} of them in batches submitted earlier: collected when" in dry.output, dry.output[-3000:]
    assert "the response store: about $0.00 " in dry.output  # nothing to pay for them again
    api.complete_batches_after(3)  # the batch ends while the live run waits for it
    result = described.snakemake()
    assert f"{len(DESCRIBED)} prompt(s) are in batch {batch_id}" in result.output, result.output[-3000:]
    assert api.paid_text_calls == [], "prompts the batch was writing were paid again live"
    assert len(api.batch_paid_lines) == len(DESCRIBED) and len(api.paid_image_calls) == len(DESCRIBED)
    assert all(e["collected"] for e in recorded(root)) and len(api.batches_created) == 1
    assert "prompts written by the model: $" in result.output
    check_outputs(root)
