"""Prompts written by a model (``describe:``), end to end through `snakemake`: the real openai client
asks the stand-in's ``/v1/responses`` for each row's prompt, then its images API for the image made
from it. The stand-in's chat model is deterministic and blind to trailing punctuation
(tests.support.openai_models.written_prompt), so an edit that writes the same prompt can be made."""

import csv
import io
import json
import shutil

import pytest

from tests.conftest import update_config
from tests.support.openai_models import written_prompt

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
