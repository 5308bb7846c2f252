"""End to end through the `snakemake` command line, with the real openai client talking to the
stand-in images server and boto3 talking to moto's S3 server, both on loopback."""

import io
import json
import os
import re

import pytest
from PIL import Image

from tests.conftest import API_KEY
from tests.support.fake_openai import expected_color

BUCKET = "image-batch-test"

SHEET = (
    "\ufeffimage_id, context, description, notes\r\n"
    'cake, Food & Beverage, "A cake, with ""icing"" and a candle", internal note\r\n'
    "\r\n"
    "fox,Nature,A red fox in snow\r\n"
    'creme, Café Crème, "Crème brûlée, torched; ünïcödé ✓", x\r\n'
    'tree,Nature,"An oak\r\nin two lines"\r\n'
    ",,,\r\n"
)
EXPECTED = {
    "food-beverage/cake": 'A cake, with "icing" and a candle',
    "nature/fox": "A red fox in snow",
    "cafe-creme/creme": "Crème brûlée, torched; ünïcödé ✓",
    "nature/tree": "An oak\nin two lines",
}


@pytest.fixture
def live(runner, api, s3):
    """The project set up for a real run: key, endpoint, bucket, AWS credentials."""
    runner.env.update(s3.env(), AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url, S3_BUCKET_NAME=BUCKET)
    s3.client().create_bucket(Bucket=BUCKET)
    (runner.root / "input.csv").write_text(SHEET, encoding="utf-8", newline="")
    return runner


def planned_images(output):
    return sorted(set(re.findall(r"output: results/images/([^,\s]+)\.png", output)))


def check_image(root, stem, prompt):
    png = (root / "results/images" / f"{stem}.png").read_bytes()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.convert("RGB").getpixel((0, 0)) == expected_color(prompt)
    sidecar = json.loads((root / "results/images" / f"{stem}.json").read_text())
    assert sidecar["prompt"] == prompt and sidecar["provider"] == "openai"
    assert sidecar["model"] == "gpt-image-2.5-sunburst"
    assert sidecar["request_id"].startswith("req_") and sidecar["usage"]["total_tokens"] > 0
    import hashlib

    assert sidecar["sha256"] == hashlib.sha256(png).hexdigest()
    return png


def test_full_pipeline_rerun_and_change_detection(live, api, s3):
    root = live.root
    live.snakemake("--config", "input_csv=input.csv")

    # one correct PNG per row, in its context folder, made by the API
    assert len(api.paid_calls) == 4
    for call in api.calls:
        assert call["body"]["output_format"] == "png" and "response_format" not in call["body"]
        assert call["body"]["model"] == "gpt-image-2.5-sunburst"
    images = {stem: check_image(root, stem, prompt) for stem, prompt in EXPECTED.items()}

    # the same bytes in the bucket, and the marker written after the images
    stored = s3.objects(BUCKET)
    for stem, png in images.items():
        assert stored[f"{stem}.png"] == png
        assert stored[f"{stem}.json"] == (root / "results/images" / f"{stem}.json").read_bytes()
    marker = json.loads(stored["_SUCCESS.json"])
    assert {o["key"] for o in marker["objects"]} == {f"{s}.{ext}" for s in EXPECTED for ext in ("png", "json")}
    assert marker["counts"]["images"] == 4
    local_marker = root / "results/_SUCCESS.json"
    assert local_marker.stat().st_mtime >= max(p.stat().st_mtime for p in (root / "results/images").rglob("*"))
    listing = s3.client().list_objects_v2(Bucket=BUCKET)["Contents"]
    marker_time = next(o["LastModified"] for o in listing if o["Key"] == "_SUCCESS.json")
    assert all(o["LastModified"] <= marker_time for o in listing)

    # a second run does nothing and calls nothing
    again = live.snakemake("--config", "input_csv=input.csv")
    assert "Nothing to be done" in again.output
    assert len(api.calls) == 4

    # delete one image, edit one description, add one row
    fox_before = (root / "results/images/nature/fox.png").read_bytes()
    (root / "results/images/nature/fox.png").unlink()
    sheet = SHEET.replace("An oak\r\nin two lines", "A birch by a lake")
    sheet += "owl,Nature,An owl at night\r\n"
    (root / "input.csv").write_text(sheet, encoding="utf-8", newline="")
    # --verbose: Snakemake's job blocks on the console (hidden by default), read by planned_images
    dry = live.snakemake("--dry-run", "--verbose", "--config", "input_csv=input.csv")
    assert planned_images(dry.output) == ["nature/fox", "nature/owl", "nature/tree"]
    assert len(api.calls) == 4

    made = live.snakemake("--verbose", "--config", "input_csv=input.csv")
    assert planned_images(made.output) == ["nature/fox", "nature/owl", "nature/tree"]
    # the deleted image was paid for already: it comes back from the response store, not the API
    new_prompts = sorted(call["body"]["prompt"] for call in api.calls[4:])
    assert new_prompts == ["A birch by a lake", "An owl at night"]
    assert (root / "results/images/nature/fox.png").read_bytes() == fox_before
    check_image(root, "nature/tree", "A birch by a lake")
    check_image(root, "nature/owl", "An owl at night")
    stored = s3.objects(BUCKET)
    assert stored["nature/owl.png"] == (root / "results/images/nature/owl.png").read_bytes()
    assert stored["nature/tree.png"] == (root / "results/images/nature/tree.png").read_bytes()
    assert len(json.loads(stored["_SUCCESS.json"])["objects"]) == 10

    # an image deleted with nothing else changed is made again (from the store), though the sync
    # marker downstream of it is up to date
    owl = (root / "results/images/nature/owl.png").read_bytes()
    (root / "results/images/nature/owl.png").unlink()
    alone = live.snakemake("--verbose", "--config", "input_csv=input.csv")
    assert planned_images(alone.output) == ["nature/owl"]
    assert len(api.calls) == 6 and (root / "results/images/nature/owl.png").read_bytes() == owl

    # so is an image whose sidecar alone was deleted (no declared output of the image job: a
    # marker named by the PNG's time, a target of the run, makes the job due), and the sidecar is
    # synced again; a dry run names the marker and writes nothing
    (root / "results/images/nature/owl.json").unlink()
    s3.client().delete_object(Bucket=BUCKET, Key="nature/owl.json")
    dry = live.snakemake("--dry-run", "--verbose", "--config", "input_csv=input.csv")
    assert planned_images(dry.output) == ["nature/owl"]
    assert not (root / "results/specs/_remake").exists()
    sidecar_alone = live.snakemake("--verbose", "--config", "input_csv=input.csv")
    assert planned_images(sidecar_alone.output) == ["nature/owl"]
    assert len(api.calls) == 6 and (root / "results/images/nature/owl.png").read_bytes() == owl
    assert s3.objects(BUCKET)["nature/owl.json"] == (root / "results/images/nature/owl.json").read_bytes()
    assert len(list((root / "results/specs/_remake/nature").glob("owl.*.json"))) == 1
    assert planned_images(live.snakemake("--dry-run", "--verbose", "--config", "input_csv=input.csv").output) == []

    # the sync asked for alone (a target), a sidecar lost and its chunk's digest due (another PNG
    # newer): the digest takes the image's marker, so the image is made again before it
    (root / "results/images/nature/owl.json").unlink()
    os.utime(root / "results/images/nature/fox.png")
    target = live.snakemake("--verbose", "--config", "input_csv=input.csv", "--", "results/_SUCCESS.json")
    assert planned_images(target.output) == ["nature/owl"]
    assert len(api.calls) == 6 and (root / "results/images/nature/owl.png").read_bytes() == owl
    assert s3.objects(BUCKET)["nature/owl.json"] == (root / "results/images/nature/owl.json").read_bytes()
    markers = list((root / "results/specs/_remake/nature").glob("owl.*.json"))
    assert len(markers) == 1

    # a sidecar deleted alone again (another marker: the PNG was made again since) while its
    # chunk's digest is due anyway (a row of the chunk edited): the digest takes the PNGs only,
    # and runs after the image job has made the sidecar again
    (root / "results/images/nature/owl.json").unlink()
    sheet = sheet.replace("A birch by a lake", "A birch in the snow")
    (root / "input.csv").write_text(sheet, encoding="utf-8", newline="")
    dry = live.snakemake("--dry-run", "--verbose", "--config", "input_csv=input.csv")
    digest_inputs = re.search(r"rule digest_chunk:\n\s+input: ([^\n]*)", dry.output)[1].split(", ")
    assert "results/images/nature/owl.png" in digest_inputs
    assert not [name for name in digest_inputs if name.endswith(".json") and "/images/" in name]
    both = live.snakemake("--verbose", "--config", "input_csv=input.csv")
    # (the image's earlier marker goes when its new one is written)
    assert [path.name for path in (root / "results/specs/_remake/nature").glob("owl.*.json")] != [markers[0].name]
    assert len(list((root / "results/specs/_remake/nature").glob("owl.*.json"))) == 1
    assert planned_images(both.output) == ["nature/owl", "nature/tree"]
    assert len(api.calls) == 7 and (root / "results/images/nature/owl.png").read_bytes() == owl
    assert s3.objects(BUCKET)["nature/owl.json"] == (root / "results/images/nature/owl.json").read_bytes()
    assert json.loads(s3.objects(BUCKET)["nature/tree.json"])["prompt"] == "A birch in the snow"

    # the key is in no file the workflow wrote
    for path in list(root.joinpath("results").rglob("*")) + list(root.joinpath(".snakemake").rglob("*")):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


BAD_SHEETS = [
    ("id,context,description\nx,c,d\n", "line 1: missing column(s) 'image_id'"),
    ("image_id,context,description\n,c,d\n", "line 2, column image_id: image_id is empty"),
    ("image_id,context,description\na,c,d\na,c,e\n", "line 3, column image_id: image_id 'a' duplicates"),
    ("image_id,context,description\n../x,c,d\n", "line 2, column image_id: image_id '../x' is not allowed"),
    ("image_id,context,description\na,,d\n", "line 2, column context: context is empty"),
    ("image_id,context,description\na,***,d\n", "line 2, column context: context '***' gives an empty folder"),
    ("image_id,context,description\na,A B,d\nb,a-b,d\n", "line 3, column context: context 'a-b' maps to folder"),
    ("image_id,context,description\na,c,\n", "line 2, column description: description is empty"),
    ("image_id,context,description\na,c," + "x" * 32001 + "\n", "description is 32001 characters long"),
    ("image_id,context,description\na,c,x\x00y\n", "line 2, column description: contains a NUL byte"),
    (b"image_id,context,description\na,c,caf\xe9\n", "line 2: text is not UTF-8"),
    ("", "the file is empty"),
]


@pytest.mark.parametrize("sheet, message", BAD_SHEETS)
def test_bad_sheets_are_refused_before_any_call(live, api, s3, sheet, message):
    root = live.root
    data = sheet if isinstance(sheet, bytes) else sheet.encode("utf-8")
    (root / "input.csv").write_bytes(data)
    before = {p for p in root.rglob("*") if ".snakemake" not in p.parts}
    result = live.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    assert message in result.output and "input.csv" in result.output
    assert "Traceback" not in result.output
    assert api.calls == [] and set(s3.objects(BUCKET)) == set()
    after = {p for p in root.rglob("*") if ".snakemake" not in p.parts}
    assert {p for p in after - before if "results" not in p.relative_to(root).parts} == set()
    assert not (root / "results/images").exists()

    via_main = live.main("input.csv")
    assert via_main.returncode == 2 and message in via_main.output and "Traceback" not in via_main.output


def test_missing_sheet_file(live, api):
    result = live.snakemake("--config", "input_csv=nope.csv", check=False)
    assert result.returncode != 0 and "nope.csv" in result.output and "cannot read the file" in result.output


def test_bucket_without_key_refuses_placeholders(runner, s3):
    runner.env.update(s3.env(), S3_BUCKET_NAME=BUCKET)
    s3.client().create_bucket(Bucket=BUCKET)
    result = runner.snakemake(check=False)
    assert result.returncode != 0 and "refusing to generate offline placeholders" in result.output
    assert set(s3.objects(BUCKET)) == set() and not (runner.root / "results/images").exists()


def test_offline_default_via_main_py(runner):
    """No key, no bucket: the example sheet through main.py, offline and loudly so."""
    result = runner.main("config/example.csv")
    assert result.returncode == 0, result.output
    assert "OFFLINE MODE" in result.output
    pngs = sorted((runner.root / "results/images").rglob("*.png"))
    assert len(pngs) == 6
    assert (runner.root / "results/bucket/_SUCCESS.json").exists()
    for png in pngs:
        assert (runner.root / "results/bucket" / png.relative_to(runner.root / "results/images")).read_bytes() == (
            png.read_bytes()
        )
    sidecar = json.loads(pngs[0].with_suffix(".json").read_text())
    assert sidecar["provider"] == "offline" and sidecar["cost"]["usd"] == 0.0  # every sidecar says what it cost
    marker = json.loads((runner.root / "results/bucket/_SUCCESS.json").read_text())
    assert marker["cost"]["total"] == 0.0 and marker["cost"]["images"] == 6 and marker["cost"]["unpriced"] == 0


def test_jpeg_answer_is_stored_as_png_and_garbage_never_becomes_a_file(live, api):
    api.set_behavior("fox", "jpeg")
    api.set_behavior("oak", "not_image")
    result = live.snakemake("--config", "input_csv=input.csv", check=False)
    assert result.returncode != 0
    root = live.root
    fox = (root / "results/images/nature/fox.png").read_bytes()
    assert fox.startswith(b"\x89PNG")
    assert json.loads((root / "results/images/nature/fox.json").read_text())["source_format"] == "JPEG"
    assert not (root / "results/images/nature/tree.png").exists()
    assert not list((root / "results/images/nature").glob("*.part"))
    assert not (root / "results/_SUCCESS.json").exists()
    check_image(root, "food-beverage/cake", EXPECTED["food-beverage/cake"])  # the others still made
