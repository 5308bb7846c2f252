"""Issue 18's "done when": one sheet mixing per-row settings, variants, reference pictures and
prompts written by a model, end to end through `snakemake` against the stand-in (live, and in batch
mode through its Batch API); changing one cell, one picture or one variant count (and one
description) remakes exactly what depends on it and pays only for that, and the dry run's estimate
says so first."""

import io
import os

import pytest
from PIL import Image

from tests.conftest import API_KEY, update_config
from tests.support.fake_openai import FakeOpenAI

HEADER = "image_id,context,description,size,quality,variants,reference"
ROWS = {
    "banner": "banner,Shop,a wide banner of a coffee shop,1536x1024,,,",
    "hero": "hero,Shop,a hero shot of a cake,,high,2,",
    "mug": "mug,Shop,the mug on a beach,,,,pics/mug.png",
    "plain": "plain,Shop,a plain red mug,,,,",
}


def picture(path, color):
    out = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(out, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())


def write_sheet(root, rows):
    (root / "sheets/input.csv").write_text("\n".join([HEADER, *rows.values()]) + "\n")


def paid(api):
    """Everything billed so far: live calls and batch lines, prompts and images."""
    return len(api.paid_calls) + len(api.batch_paid_lines)


def images(root):
    """Each image's (PNG, sidecar) modification times."""
    folder = root / "results/images/shop"
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob("*.*"))}


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_one_sheet_with_every_per_row_column_and_written_prompts(runner, mode):
    root = runner.root
    with FakeOpenAI(api_key=API_KEY, fixed_created=1_790_000_000) as api:
        runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        update_config(
            root,
            input_csv="sheets/input.csv",
            mode=mode,
            batch={"poll_seconds": 0.02},
            describe={"model": "gpt-5.4-mini"},
        )
        picture(root / "sheets/pics/mug.png", (250, 250, 250))
        rows = dict(ROWS)
        write_sheet(root, rows)

        dry = runner.snakemake("-n")
        assert "5 to pay for" in dry.output and "prompts: 4 of 5 to write" in dry.output, dry.output[-3000:]
        assert paid(api) == 0 and not (root / "results/images").exists()
        runner.snakemake()
        # 4 prompts (hero's two candidates share one) and 5 images, each paid once
        assert paid(api) == 9
        if mode == "batch":
            assert api.paid_calls == []  # everything went through the Batch API
        edits = [c for c in api.calls + api.batch_lines if "edits" in str(c.get("path") or c.get("url") or "")]
        edit_lines = [line for line in api.batch_lines if "images" in (line.get("body") or {})]
        assert len(edits) + len(edit_lines) == 1  # the row with a picture is an edit request
        assert "nothing to do" in runner.snakemake().output and paid(api) == 9

        def change(what, expected, remade):
            before, made = paid(api), images(root)
            what()
            dry = runner.snakemake("-n")
            assert f"{expected - (1 if 'plain.png' in remade else 0)} to pay for" in dry.output, dry.output[-3000:]
            runner.snakemake()
            assert paid(api) - before == expected
            after = images(root)
            changed = {name[: name.rindex(".")] for name in after if after[name] != made.get(name)}
            assert changed == {name[: name.rindex(".")] for name in remade}

        def cell():
            rows["banner"] = rows["banner"].replace("1536x1024", "1024x1536")
            write_sheet(root, rows)

        def reference():
            picture(root / "sheets/pics/mug.png", (10, 10, 10))

        def variants():
            rows["hero"] = rows["hero"].replace(",high,2,", ",high,3,")
            write_sheet(root, rows)

        def description():
            rows["plain"] = rows["plain"].replace("a plain red mug", "a plain blue mug")
            write_sheet(root, rows)

        change(cell, 1, {"banner.png"})
        change(reference, 1, {"mug.png"})
        change(variants, 1, {"hero-3.png"})
        change(description, 2, {"plain.png"})  # its prompt, then its image
        assert "nothing to do" in runner.snakemake().output
        assert not [p for p in root.rglob("*.part")] and os.listdir(root / "results/images") == ["shop"]
