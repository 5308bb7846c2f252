"""Prompts written by a model (``describe:``), end to end through `snakemake`: the real openai client
asks the stand-in's ``/v1/responses`` for each row's prompt, then its images API for the image made
from it. The stand-in's chat model is deterministic and blind to trailing punctuation
(tests.support.openai_models.written_prompt), so an edit that writes the same prompt can be made."""

import contextlib
import csv
import io
import json
import shutil
import sys

import pytest

from tests.conftest import update_config
from tests.support.openai_models import responses_answer, written_prompt

MODEL = "gpt-5.4-mini"
ROWS = {
    "fox": ("Nature", "A red fox in snow"),
    "lake": ("Nature", "A calm lake at dawn"),
    "cake": ("Food", "A chocolate cake"),
}


def write_sheet(root, rows=ROWS):
    lines = ["image_id,context,description"] + [f"{i},{c},{d}" for i, (c, d) in rows.items()]
    (root / "input.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def described(keyed):
    update_config(keyed.root, input_csv="input.csv", describe={"model": MODEL})
    write_sheet(keyed.root)
    return keyed


def folder(context):
    return context.lower()


def image_prompts(api):
    return sorted(call["body"]["prompt"] for call in api.paid_image_calls)


def text_inputs(api):
    return sorted(call["body"]["input"] for call in api.paid_text_calls)


def check_outputs(root, rows=ROWS):
    manifest = list(csv.DictReader(io.StringIO((root / "results/manifest.csv").read_text())))
    by_id = {row["image_id"]: row for row in manifest}
    for image_id, (context, description) in rows.items():
        prompt = written_prompt(description)
        path = root / "results/prompts" / folder(context) / f"{image_id}.txt"
        assert path.read_text() == prompt
        sidecar = json.loads((root / "results/images" / folder(context) / f"{image_id}.json").read_text())
        assert sidecar["description"] == description and sidecar["prompt"] == prompt
        assert by_id[image_id]["description"] == description and by_id[image_id]["prompt"] == prompt


def test_prompts_written_then_images_made_from_them_and_never_paid_twice(described, api):
    root = described.root
    result = described.snakemake()
    # each description went to the chat model once, with the instructions
    assert text_inputs(api) == sorted(d for _, d in ROWS.values())
    assert all(call["body"]["model"] == MODEL and call["body"]["instructions"] for call in api.paid_text_calls)
    # each image was made from the written prompt
    assert image_prompts(api) == sorted(written_prompt(d) for _, d in ROWS.values())
    check_outputs(root)
    assert "prompts written by the model" in result.output

    # a rerun pays nothing and makes nothing
    api.reset()
    described.snakemake()
    assert api.paid_calls == []

    # everything made again from the response store: prompts and images
    shutil.rmtree(root / "results")
    described.snakemake()
    assert api.paid_calls == []
    check_outputs(root)
    described.snakemake("--report", "report.html")
    assert (root / "report.html").exists()


def test_editing_one_description_rewrites_that_prompt_and_remakes_that_image_only(described, api):
    root = described.root
    described.snakemake()
    before = {i: (root / "results/images" / folder(c) / f"{i}.png").stat().st_mtime_ns for i, (c, _) in ROWS.items()}
    api.reset()

    rows = {**ROWS, "fox": ("Nature", "A grey fox in snow")}
    write_sheet(root, rows)
    described.snakemake()
    assert text_inputs(api) == ["A grey fox in snow"]
    assert image_prompts(api) == [written_prompt("A grey fox in snow")]
    check_outputs(root, rows)
    after = {i: (root / "results/images" / folder(c) / f"{i}.png").stat().st_mtime_ns for i, (c, _) in rows.items()}
    assert after["lake"] == before["lake"] and after["cake"] == before["cake"]

    # the next run finds everything up to date
    api.reset()
    result = described.snakemake()
    assert api.paid_calls == []
    assert "nothing to do: all 3 image(s) are made" in result.output


def test_an_edit_that_writes_the_same_prompt_pays_for_no_image(described, api):
    root = described.root
    described.snakemake()
    api.reset()
    rows = {**ROWS, "lake": ("Nature", "A calm lake at dawn.")}  # the stand-in's writer ignores the full stop
    write_sheet(root, rows)
    described.snakemake()
    assert text_inputs(api) == ["A calm lake at dawn."]
    assert image_prompts(api) == []  # the same prompt: the image's answer is in the store
    check_outputs(root, rows)


def test_a_dry_run_writes_nothing_pays_nothing_and_estimates_the_prompts(described, api):
    root = described.root
    result = described.snakemake("-n")
    assert api.calls == []
    assert not (root / "results").exists()
    assert not (root / "response-store").exists() or not list((root / "response-store").glob("??/*.json"))
    assert f"prompts: 3 of 3 to write with openai model {MODEL}" in result.output
    assert "an estimate" in result.output
    assert "3 of 3 image(s) to make" in result.output

    described.snakemake()
    api.reset()
    result = described.snakemake("-n")
    assert api.calls == []
    assert f"prompts: 0 of 3 to write with openai model {MODEL}" in result.output


def test_without_a_key_the_offline_writer_says_so_and_the_run_goes_on(runner):
    update_config(runner.root, input_csv="input.csv", describe={"model": MODEL})
    write_sheet(runner.root)
    result = runner.snakemake()
    assert result.output.count("OFFLINE WRITER") == 1
    prompt = (runner.root / "results/prompts/nature/fox.txt").read_text()
    assert prompt.startswith("A red fox in snow (offline writer; instructions: You write prompts")


def test_ctrl_c_while_prompts_are_written_keeps_the_answers_in_flight(keyed, api):
    """12 rows, one chunk: the write_prompts job has CONCURRENCY calls in flight when Ctrl-C comes; they
    are finished and stored, no further call is made, no image is paid; the rerun pays only for the rest."""
    from image_batch.descriptions.prompts import CONCURRENCY
    from tests.test_signals import Live, calls_in_flight, interrupted_run

    root = keyed.root
    rows = {f"img{i:02d}": ("Nature", f"lake number {i}") for i in range(12)}
    update_config(root, input_csv="input.csv", describe={"model": MODEL})
    write_sheet(root, rows)
    run = interrupted_run(
        keyed,
        api,
        lambda runner: Live(runner, [sys.executable, "-m", "snakemake", "--cores", "4"], "describe-ctrl-c"),
        lambda run: run.ctrl_c(),
        calls_in_flight(api, CONCURRENCY),
    )
    output = run.output
    assert run.proc.returncode != 0 and "Traceback" not in output, output[-6000:]
    assert f"{CONCURRENCY} call(s) in flight are being finished and their answers kept" in output
    assert len(api.paid_text_calls) == CONCURRENCY and api.paid_image_calls == []
    paid = {call["body"]["input"] for call in api.paid_text_calls}
    stored = {json.loads(p.read_text())["request"].get("input") for p in (root / "response-store").glob("??/*.json")}
    assert paid <= stored

    api.reset()
    keyed.snakemake()
    assert sorted(call["body"]["input"] for call in api.paid_text_calls) == sorted(
        d for _, d in rows.values() if d not in paid
    )
    assert len(api.paid_image_calls) == len(rows)


@contextlib.contextmanager
def _gemini_sheet(runner, **config):
    """The Gemini stand-in, its key and address in the run's environment, the sheet written and the
    config set to provider gemini with ``config``; yields the stand-in."""
    from tests.support.fake_gemini import FakeGemini

    key = "AIzaSy-test-SECRET-gemini-0123456789"
    with FakeGemini(api_key=key) as gemini:
        runner.env.update(GEMINI_API_KEY=key, GOOGLE_GEMINI_BASE_URL=gemini.base_url)
        update_config(runner.root, input_csv="input.csv", provider="gemini", **config)
        write_sheet(runner.root)
        yield gemini


def test_gemini_writes_the_prompts_for_gemini_images(runner):
    """describe.provider follows the image provider: gemini's generateContent with text output, the
    instructions as system instruction; the images are made from its prompts; a rerun pays nothing."""
    with _gemini_sheet(
        runner,
        gemini={"model": "gemini-3-pro-image", "image_size": "2K", "aspect_ratio": "16:9"},
        describe={"model": "gemini-3-flash-preview", "contexts": {"Food": "Write a prompt for a food photo."}},
    ) as gemini:
        result = runner.snakemake()
        assert sorted(c["prompt"] for c in gemini.text_calls) == sorted(d for _, d in ROWS.values())
        assert {c["model"] for c in gemini.text_calls} == {"gemini-3-flash-preview"}
        food = [c for c in gemini.text_calls if c["prompt"] == "A chocolate cake"]
        assert food[0]["system_instruction"] == "Write a prompt for a food photo."
        assert sorted(c["prompt"] for c in gemini.image_calls) == sorted(written_prompt(d) for _, d in ROWS.values())
        check_outputs(runner.root)
        assert "prompts written by the model: $" in result.output
        count = len(gemini.calls)
        runner.snakemake()
        assert len(gemini.calls) == count


def test_the_cost_of_prompts_is_reported_from_their_usage(described, api):
    from image_batch.costs.catalog import load_catalog

    result = described.snakemake()
    rates = load_catalog(described.root / "config/models.yaml").lookup(MODEL).rates
    usage = [responses_answer(call["body"], "resp_1", 0)["usage"] for call in api.paid_text_calls]
    usd = sum(u["input_tokens"] * rates["text_input"] + u["output_tokens"] * rates["text_output"] for u in usage) / 1e6
    assert usd > 0
    assert f"prompts written by the model: ${usd:.4f} for 3" in result.output


def test_batch_mode_writes_the_prompts_in_a_batch_then_batches_the_images(described, api):
    root = described.root
    update_config(root, mode="batch", batch={"poll_seconds": 0.02})
    result = described.snakemake()
    assert result.output.count("3 prompt(s) to write go in a batch first") == 1
    assert api.paid_calls == []  # nothing at the live price: prompts and images in batches
    assert len(api.batches_created) == 2 and api.batch_lines_answered == 2 * len(ROWS)
    entries = [json.loads(p.read_text()) for p in (root / "response-store").glob("??/*.json")]
    assert sorted((e["request"].get("endpoint"), e["origin"]) for e in entries) == sorted(
        [("responses", "batch")] * 3 + [("images/generations", "batch")] * 3
    )
    assert "prompts written by the model: $" in result.output
    check_outputs(root)
    sidecar = json.loads((root / "results/images/nature/fox.json").read_text())
    assert sidecar["cost"]["price"] == "batch"

    api.reset()
    described.snakemake()
    assert api.paid_calls == [] and len(api.batches_created) == 2


def test_jobs_as_separate_processes_write_the_prompts_and_make_the_images(described, api, tmp_path):
    """A cluster executor (each job its own Snakemake process, shared filesystem): a job process plans
    again after the prompts are stored, and still finds the image job's input where the main process
    put it."""
    from tests.test_distributed import cluster_args, needs_cluster_generic

    if needs_cluster_generic.args[0]:
        pytest.skip("snakemake-executor-plugin-cluster-generic is not installed")
    state = tmp_path / "cluster"
    described.env["LOCAL_CLUSTER_DIR"] = str(state)
    described.snakemake(*cluster_args(state), timeout=240)
    assert text_inputs(api) == sorted(d for _, d in ROWS.values())
    assert image_prompts(api) == sorted(written_prompt(d) for _, d in ROWS.values())
    check_outputs(described.root)
    api.reset()
    described.snakemake(*cluster_args(state), timeout=240)
    assert api.paid_calls == []


def test_gemini_batch_mode_writes_the_prompts_in_a_gemini_batch_then_the_images(runner):
    with _gemini_sheet(
        runner,
        mode="batch",
        batch={"poll_seconds": 0.02},
        gemini={"model": "gemini-3-pro-image", "image_size": "2K"},
        describe={"model": "gemini-3-flash-preview", "instructions": "Write one image prompt."},
    ) as gemini:
        result = runner.snakemake()
        assert "3 prompt(s) to write go in a batch first" in result.output
        assert gemini.paid_calls == []  # nothing live
        assert gemini.batch_creates == 2
        texts = [line for line in gemini.batch_lines if line.get("kind") == "text"]
        assert sorted(line["prompt"] for line in texts) == sorted(d for _, d in ROWS.values())
        assert {line["system_instruction"] for line in texts} == {"Write one image prompt."}
        images = [line for line in gemini.batch_lines if line.get("kind") != "text"]
        assert sorted(line["prompt"] for line in images) == sorted(written_prompt(d) for _, d in ROWS.values())
        check_outputs(runner.root)
        runner.snakemake()
        assert gemini.paid_calls == [] and gemini.batch_creates == 2
