"""Reference pictures and masks (sheet columns ``reference`` and ``mask``): edit requests, end to end
through `snakemake` against the stand-ins, and the checks made while planning."""

import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import API_KEY, FAST_RETRY, update_config


def picture(path, size=(32, 24), color=(200, 30, 30), fmt="PNG", mode="RGB"):
    """A small real picture at ``path`` (its bytes returned)."""
    out = io.BytesIO()
    Image.new(mode, size, color if mode != "RGBA" else (*color, 0)).save(out, format=fmt)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(out.getvalue())
    return out.getvalue()


def sha(data):
    return hashlib.sha256(data).hexdigest()


HEADER = "image_id,context,description,reference,mask\r\n"


def write_sheet(root, rows, name="sheets/input.csv"):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(",".join(row) + "\r\n" for row in rows), newline="")
    return name


@pytest.fixture
def edits(keyed):
    """A project whose sheet (in sheets/, with its pictures beside it) has edit rows and plain rows."""
    root = keyed.root
    update_config(root, retry=FAST_RETRY)
    keyed.pictures = {
        "mug": picture(root / "sheets/pics/mug.png", color=(250, 250, 250)),
        "logo": picture(root / "sheets/pics/logo.jpg", fmt="JPEG", color=(10, 10, 200)),
        "mask": picture(root / "sheets/pics/mask.png", mode="RGBA"),
    }
    keyed.sheet = write_sheet(
        root,
        [
            ("edit", "Shop", "the mug on a beach", "pics/mug.png;pics/logo.jpg", "pics/mask.png"),
            ("logo2", "Shop", "the logo on a flag", "pics/logo.jpg", ""),
            ("plain", "Shop", "a plain red mug", "", ""),
        ],
    )
    return keyed


def edit_calls(api):
    return [call for call in api.calls if call["path"].startswith("/v1/images/edits")]


def sidecar(root, image_id):
    return json.loads((root / "results/images/shop" / f"{image_id}.json").read_text())


def test_edit_row_sends_pictures_and_mask_and_names_them_in_the_sidecar(edits, api):
    result = edits.snakemake("--config", f"input_csv={edits.sheet}")
    calls = edit_calls(api)
    by_prompt = {call["body"]["prompt"]: call for call in calls}
    assert set(by_prompt) == {"the mug on a beach", "the logo on a flag"}
    edit = by_prompt["the mug on a beach"]
    assert edit["images"] == [edits.pictures["mug"], edits.pictures["logo"]]  # both, in the sheet's order
    assert edit["mask"] == edits.pictures["mask"]
    assert by_prompt["the logo on a flag"]["images"] == [edits.pictures["logo"]]
    assert by_prompt["the logo on a flag"]["mask"] is None
    plain = [call for call in api.calls if call["path"].startswith("/v1/images/generations")]
    assert [call["body"]["prompt"] for call in plain] == ["a plain red mug"]
    assert len(api.paid_calls) == 3
    made = sidecar(edits.root, "edit")
    assert made["references"] == [
        {"path": "pics/mug.png", "sha256": sha(edits.pictures["mug"])},
        {"path": "pics/logo.jpg", "sha256": sha(edits.pictures["logo"])},
    ]
    assert made["mask"] == {"path": "pics/mask.png", "sha256": sha(edits.pictures["mask"])}
    assert "references" not in sidecar(edits.root, "plain")
    # the request file holds the hashes and names, never the bytes nor an absolute path
    spec_text = "".join(p.read_text() for p in (edits.root / "results/specs/shop").glob("edit.*.json"))
    assert sha(edits.pictures["mug"]) in spec_text and str(edits.root) not in spec_text
    assert "images/edits" in spec_text
    # the pictures went nowhere else: not into results/ (logs, sidecars, store), not into the output
    for path in (edits.root / "results").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert edits.pictures["mug"] not in data and edits.pictures["mask"] not in data, path
    assert "Traceback" not in result.output


def planned(runner):
    """The images a dry run would make (--verbose: Snakemake's job blocks on the console)."""
    dry = runner.snakemake("-n", "--verbose", "--config", f"input_csv={runner.sheet}")
    return set(re.findall(r"output: results/images/shop/([^,\s]+)\.png", dry.output))


def test_replacing_one_picture_remakes_exactly_its_rows(edits, api):
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert len(api.paid_calls) == 3
    api.reset()
    # touched, same content: Snakemake may rerun the jobs (the file is newer), the store serves them
    os.utime(edits.root / "sheets/pics/logo.jpg")
    assert planned(edits) == {"edit", "logo2"}  # the picture is a declared input of exactly its rows' jobs
    # the estimate agrees with what Snakemake will run: 2 to make, both served from the store
    dry = edits.snakemake("-n", "--config", f"input_csv={edits.sheet}")
    assert "estimate: 2 of 3 image(s) to make, 2 of them served from the response store (no cost), 0 to pay" in (
        dry.output
    ), dry.output[-3000:]
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert api.paid_calls == []
    # replaced: exactly the two rows that name the logo are paid for again, once each
    picture(edits.root / "sheets/pics/logo.jpg", fmt="JPEG", color=(0, 160, 0))
    assert planned(edits) == {"edit", "logo2"}
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert sorted(call["body"]["prompt"] for call in api.paid_calls) == ["the logo on a flag", "the mug on a beach"]
    assert all(call["path"].startswith("/v1/images/edits") for call in api.paid_calls)
    api.reset()
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert api.calls == []


def test_moving_the_project_and_renaming_a_picture_pay_for_nothing(edits, api, tmp_path):
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    api.reset()
    moved = tmp_path / "moved"
    os.rename(edits.root, moved)
    edits.root = moved
    (moved / "sheets/pics/mug.png").rename(moved / "sheets/pics/mug-renamed.png")
    text = (moved / edits.sheet).read_text().replace("pics/mug.png", "pics/mug-renamed.png")
    (moved / edits.sheet).write_text(text, newline="")
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert api.paid_calls == []  # same pictures, same requests: served from the store
    assert sidecar(moved, "edit")["references"][0]["path"] == "pics/mug-renamed.png"


def _project_files(root):
    """The project's files outside results/ (and Snakemake's own .snakemake), with their bytes."""
    skip = {"results", ".snakemake", "__pycache__"}
    files = [p for p in root.rglob("*") if p.is_file() and not skip & set(p.relative_to(root).parts)]
    return {p.relative_to(root): p.read_bytes() for p in files}


def check_refused(runner, api, expected):
    before = _project_files(runner.root)
    for args in (("-n",), ()):
        result = runner.snakemake(*args, "--config", f"input_csv={runner.sheet}", check=False)
        assert result.returncode != 0
        assert expected in result.output, result.output[-3000:]
        assert "Traceback" not in result.output
    assert api.calls == []
    after = _project_files(runner.root)
    assert after == before  # nothing written outside results/
    return result


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "sheets/input.csv, line 2, column reference: pics/nothing.png no such file"),
        ("not_image", "line 2, column reference: pics/notes.png is not a picture Pillow can read"),
        ("gif", "line 2, column reference: pics/anim.gif is a GIF picture; provider openai takes png, jpeg, webp"),
        ("oversize", "line 2, column mask: pics/big-mask.png is 4.0 MB; the provider takes pictures under 4 MB"),
        ("mask_size", "line 2, column mask: pics/small-mask.png is 16x16; a mask must have the size of the first"),
        ("mask_jpeg", "line 2, column mask: pics/mask.jpg is a JPEG picture; a mask must be a PNG"),
        ("mask_opaque", "line 2, column mask: pics/opaque.png has no transparency"),
        ("mask_alone", "line 2, column mask: a mask needs a picture to edit"),
        ("too_many", "line 2, column reference: 17 pictures; provider openai takes at most 16"),
        ("url", "line 2, column reference: http://example.com/a.png: only https:// addresses are fetched"),
    ],
)
def test_bad_pictures_are_sheet_errors_before_any_call(keyed, api, case, expected):
    root = keyed.root
    pics = root / "sheets/pics"
    picture(pics / "ok.png")
    ref, mask = "pics/ok.png", ""
    if case == "missing":
        ref = "pics/nothing.png"
    elif case == "not_image":
        (pics / "notes.png").write_text("not a picture at all\n")
        ref = "pics/notes.png"
    elif case == "gif":
        picture(pics / "anim.gif", fmt="GIF")
        ref = "pics/anim.gif"
    elif case == "oversize":
        (pics / "big-mask.png").write_bytes(picture(pics / "m.png", mode="RGBA") + b"\0" * (4 * 1024 * 1024))
        mask = "pics/big-mask.png"
    elif case == "mask_size":
        picture(pics / "small-mask.png", size=(16, 16), mode="RGBA")
        mask = "pics/small-mask.png"
    elif case == "mask_jpeg":
        picture(pics / "mask.jpg", fmt="JPEG")
        mask = "pics/mask.jpg"
    elif case == "mask_opaque":
        picture(pics / "opaque.png")
        mask = "pics/opaque.png"
    elif case == "mask_alone":
        ref, mask = "", "pics/ok.png"
    elif case == "too_many":
        ref = ";".join(["pics/ok.png"] * 17)
    elif case == "url":
        ref = "http://example.com/a.png"
    keyed.sheet = write_sheet(root, [("row1", "Shop", "a mug", ref, mask), ("row2", "Shop", "a cup", "", "")])
    check_refused(keyed, api, expected)


def test_a_moderation_cell_on_an_edit_row_is_a_sheet_error_not_a_setting_silently_dropped(keyed, api):
    """/v1/images/edits (as the client sends it) takes no moderation setting: a moderation cell on
    a row with pictures would be part of the row's request identity and never sent."""
    root = keyed.root
    picture(root / "sheets/pics/ok.png")
    (root / "sheets").mkdir(exist_ok=True)
    (root / "sheets/input.csv").write_text(
        "image_id,context,description,reference,moderation\r\n"
        "row1,Shop,a mug,pics/ok.png,low\r\nrow2,Shop,a cup,,low\r\n",
        newline="",
    )
    keyed.sheet = "sheets/input.csv"
    result = check_refused(keyed, api, "line 2, column moderation: this row has reference pictures")
    assert "line 3" not in result.output  # a generation row takes moderation


def test_config_moderation_with_edit_rows_is_one_line_before_any_call(tmp_path, monkeypatch):
    from image_batch.common.errors import SheetError
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(references, "_cache", {})
    picture(tmp_path / "sheets/p.png")
    rows = [Row(n + 2, f"r{n}", "Shop", "shop", f"photo {n}", reference="p.png") for n in range(3)]
    rows.append(Row(5, "plain", "Shop", "shop", "a plain mug"))
    settings = settings_for(input_csv="sheets/input.csv", openai={"model": "gpt-image-2", "moderation": "low"})
    with pytest.raises(SheetError) as refused:
        build_specs(rows, settings, "openai", "sheets/input.csv", environ={})
    assert len(refused.value.problems) == 1  # one line, not one per row
    assert "openai.moderation" in refused.value.problems[0] and "line 2" in refused.value.problems[0]
    settings = settings_for(input_csv="sheets/input.csv", openai={"model": "gpt-image-2"})
    assert len(build_specs(rows, settings, "openai", "sheets/input.csv", environ={})) == 4


def test_offline_ignores_pictures_with_one_note(runner):
    root = runner.root
    picture(root / "sheets/pics/mug.png")
    runner.sheet = write_sheet(root, [(f"r{i}", "Shop", f"mug {i}", "pics/mug.png", "") for i in range(3)])
    result = runner.snakemake("--config", f"input_csv={runner.sheet}", "provider=offline", "variants=2")
    assert result.output.count("the offline generator ignores them") == 1
    assert "3 row(s) name reference pictures" in result.output  # rows, not their 6 images
    assert (root / "results/images/shop/r0.png").exists()


def test_a_sheet_without_pictures_makes_the_same_requests():
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs, spec_bytes
    from tests.conftest import settings_for

    settings = settings_for(openai={"model": "gpt-image-2.5-sunburst"})
    row = Row(2, "a", "Shop", "shop", "a mug")
    spec = build_specs([row], settings, "openai", "sheet.csv", environ={})[0]
    assert "references" not in spec and "references" not in spec["request"]
    assert spec["request"]["endpoint"] == "images/generations"
    assert b"reference" not in spec_bytes(spec) and b"mask" not in spec_bytes(spec)


def test_each_distinct_picture_is_read_once(tmp_path, monkeypatch):
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from tests.conftest import settings_for

    picture(tmp_path / "logo.png")
    reads = []
    real_read = references._read
    monkeypatch.setattr(references, "_read", lambda path: reads.append(path) or real_read(path))
    monkeypatch.setattr(references, "_cache", {})
    settings = settings_for(openai={"model": "gpt-image-2.5-sunburst"})
    rows = [Row(i + 2, f"r{i}", "Shop", "shop", "a mug", reference="logo.png") for i in range(500)]
    specs = build_specs(rows, settings, "openai", str(tmp_path / "sheet.csv"), environ={})
    assert len(reads) == 1
    assert {spec["request"]["references"][0] for spec in specs} == {sha((tmp_path / "logo.png").read_bytes())}


def test_unknown_api_key_not_needed_for_checks(runner, api):
    """The checks need no key: a keyless dry run refuses a bad picture too (before placeholders)."""
    root = runner.root
    runner.sheet = write_sheet(root, [("a", "Shop", "a mug", "pics/none.png", "")])
    result = runner.snakemake("-n", "--config", f"input_csv={runner.sheet}", check=False)
    assert result.returncode != 0 and "column reference: pics/none.png no such file" in result.output
    assert API_KEY not in result.output


# -- Gemini: inline_data parts, live and in batches ---------------------------------------------

GEMINI_KEY = "AIzaSy-test-SECRET-gemini-0123456789"


@pytest.fixture
def gemini():
    from tests.support.fake_gemini import FakeGemini

    with FakeGemini(api_key=GEMINI_KEY) as server:
        yield server


@pytest.fixture
def gem(runner, gemini):
    root = runner.root
    runner.env.update(GEMINI_API_KEY=GEMINI_KEY, GOOGLE_GEMINI_BASE_URL=gemini.base_url)
    runner.pictures = {
        "mug": picture(root / "sheets/pics/mug.png", color=(250, 250, 250)),
        "logo": picture(root / "sheets/pics/logo.webp", fmt="WEBP", color=(10, 10, 200)),
    }
    runner.sheet = write_sheet(
        root,
        [
            ("edit", "Shop", "the mug on a beach", "pics/mug.png; pics/logo.webp", ""),
            ("plain", "Shop", "a plain red mug", "", ""),
        ],
    )
    update_config(root, provider="gemini", gemini={"model": "gemini-3-pro-image"}, batch={"poll_seconds": 0.05})
    return runner


@pytest.mark.parametrize("mode", ["live", "batch"])
def test_gemini_receives_the_pictures_as_inline_data(gem, gemini, mode):
    gem.snakemake("--config", f"input_csv={gem.sheet}", f"mode={mode}")
    received = gemini.calls if mode == "live" else gemini.batch_lines
    if mode == "batch":
        assert gemini.calls == []  # never a live call: the edit row went through the batch
    by_prompt = {call["prompt"]: call for call in received}
    assert set(by_prompt) == {"the mug on a beach", "a plain red mug"}
    assert by_prompt["the mug on a beach"]["images"] == [
        ("image/png", gem.pictures["mug"]),
        ("image/webp", gem.pictures["logo"]),
    ]
    assert by_prompt["a plain red mug"]["images"] == []
    assert [r["sha256"] for r in sidecar(gem.root, "edit")["references"]] == [
        sha(gem.pictures["mug"]),
        sha(gem.pictures["logo"]),
    ]


def test_gemini_takes_no_mask(gem, gemini):
    picture(gem.root / "sheets/pics/mask.png", mode="RGBA")
    gem.sheet = write_sheet(gem.root, [("edit", "Shop", "a mug", "pics/mug.png", "pics/mask.png")])
    check_refused(gem, gemini, "line 2, column mask: provider gemini takes no mask")


# -- OpenAI batch mode ----------------------------------------------------------------------------


def test_openai_batch_mode_sends_edit_lines_with_their_pictures(edits, api):
    update_config(edits.root, mode="batch", batch={"poll_seconds": 0.02})
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert api.calls == []  # not one full-price call
    endpoints = sorted(api.batch(batch_id)["endpoint"] for batch_id in api.batches_created)
    assert endpoints == ["/v1/images/edits", "/v1/images/generations"]
    lines = {line["body"]["prompt"]: line for line in api.batch_lines}
    assert set(lines) == {"the mug on a beach", "the logo on a flag", "a plain red mug"}
    assert lines["the mug on a beach"]["images"] == [edits.pictures["mug"], edits.pictures["logo"]]
    assert lines["the mug on a beach"]["mask"] == edits.pictures["mask"]
    assert lines["the logo on a flag"]["images"] == [edits.pictures["logo"]]
    assert "images" not in lines["a plain red mug"]
    for image_id in ("edit", "logo2", "plain"):
        assert sidecar(edits.root, image_id)["cost"]["price"] == "batch"
    # the pictures are in the batch's input (they must be), nowhere else under results/
    for path in (edits.root / "results").rglob("*"):
        if path.is_file():
            assert edits.pictures["mug"] not in path.read_bytes(), path


def test_openai_batch_mode_refuses_a_picture_too_large_for_a_data_url(edits, api):
    big = edits.root / "sheets/pics/big.png"
    big.write_bytes(picture(edits.root / "sheets/pics/tmp.png") + b"\0" * (15 * 1024 * 1024))
    edits.sheet = write_sheet(edits.root, [("edit", "Shop", "a mug", "pics/big.png", "")])
    update_config(edits.root, mode="batch")
    check_refused(edits, api, "line 2, column reference: pics/big.png is 15.0 MB; in mode: batch OpenAI takes")
    update_config(edits.root, mode="live")  # live takes it (under 50 MB)
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert len(edit_calls(api)) == 1


def test_estimate_says_input_pictures_are_not_priced(edits, api):
    result = edits.snakemake("-n", "--config", f"input_csv={edits.sheet}")
    assert "2 of them are edit requests: input images not priced" in result.output
    assert api.calls == []
    assert not (edits.root / "results/references").exists()  # a dry run keeps nothing it learnt
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    kept = json.loads((edits.root / "results/references/pictures.json").read_text())
    assert kept["sheets/pics/mug.png"][2] == sha(edits.pictures["mug"])


def test_refused_with_a_default_storage_provider(edits, api, s3):
    edits.env.update(s3.env())
    s3.client().create_bucket(Bucket="storage")
    args = ["--default-storage-provider", "s3", "--default-storage-prefix", "s3://storage/run"]
    args += ["--storage-s3-endpoint-url", s3.endpoint_url, "--config", f"input_csv={edits.sheet}"]
    for dry in (["-n"], []):
        result = edits.snakemake(*dry, *args, check=False)
        assert result.returncode != 0 and "Traceback" not in result.output
        assert "reference pictures are not supported with a default storage provider yet" in result.output
    assert api.calls == [] and s3.objects("storage") == {}


def test_what_a_real_run_learnt_of_the_pictures_spares_later_dry_runs_reading_them(tmp_path, monkeypatch):
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    for i in range(3):
        picture(tmp_path / f"sheets/p{i}.png", color=(i, 0, 0))
    settings = settings_for(openai={"model": "gpt-image-2.5-sunburst"})
    rows = [Row(i + 2, f"r{i}", "Shop", "shop", "a mug", reference=f"p{i}.png") for i in range(3)]

    def plan():
        """A fresh process's planning: how many pictures it read, and the requests' hashes."""
        monkeypatch.setattr(references, "_cache", {})
        monkeypatch.setattr(references, "_disk", {"loaded": None})
        reads = []
        real_read = references._read
        monkeypatch.setattr(references, "_read", lambda path: reads.append(path) or real_read(path))
        specs = build_specs(rows, settings, "openai", "sheets/input.csv", environ={})
        monkeypatch.setattr(references, "_read", real_read)
        return len(reads), [spec["request"]["references"][0] for spec in specs]

    monkeypatch.setattr(references, "_learnt", {})
    count, first = plan()
    assert count == 3 and not references.CACHE_FILE.exists()  # planning writes nothing
    references.save_cache()  # a real run's start
    assert references.CACHE_FILE.exists()
    count, again = plan()
    assert count == 0 and again == first
    picture(tmp_path / "sheets/p1.png", color=(0, 99, 0))  # replaced: read again, its new hash
    count, changed = plan()
    assert count == 1 and changed[0] == first[0] and changed[2] == first[2] and changed[1] != first[1]
    assert changed[1] == sha((tmp_path / "sheets/p1.png").read_bytes())


def test_stand_in_edits_endpoint_through_the_real_client(api, tmp_path):
    import base64

    import openai

    client = openai.OpenAI(api_key=API_KEY, base_url=api.base_url, max_retries=0)
    first, second = picture(tmp_path / "a.png"), picture(tmp_path / "b.jpg", fmt="JPEG")
    mask = picture(tmp_path / "m.png", mode="RGBA")
    answer = client.images.edit(
        model="gpt-image-2.5-sunburst",
        prompt="the mug on a beach",
        image=[("a.png", first, "image/png"), ("b.jpg", second, "image/jpeg")],
        mask=("m.png", mask, "image/png"),
        size="1024x1024",
        n=1,
    )
    call = api.calls[-1]
    assert call["path"] == "/v1/images/edits" and call["images"] == [first, second] and call["mask"] == mask
    assert call["image_names"] == ["a.png", "b.jpg"] and call["paid"]
    generated = client.images.generate(model="gpt-image-2.5-sunburst", prompt="the mug on a beach", size="1024x1024")
    assert base64.b64decode(answer.data[0].b64_json) == base64.b64decode(generated.data[0].b64_json)
    assert answer.usage is not None and answer.size == generated.size

    small = picture(tmp_path / "s.png", size=(8, 8), mode="RGBA")
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model="gpt-image-2.5-sunburst", prompt="x", image=[("a.png", first)], mask=("s.png", small, "image/png")
        )
    assert caught.value.body["param"] == "mask"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(model="gpt-image-2.5-sunburst", prompt="x", image=[("a.txt", b"not a picture")])
    assert caught.value.body["param"] == "image" and caught.value.body["code"] == "invalid_image_file"
    assert not api.calls[-1]["paid"]


# -- pictures named by an address -------------------------------------------------------------------


@pytest.fixture
def pictures_server(tmp_path):
    """A loopback HTTP server of pictures (the workflow takes http://127.0.0.1 only with the test
    switch); ``served`` lists the paths asked for."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    files, served = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("content-length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.files, server.served = files, served
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_a_picture_named_by_an_address_is_fetched_once_by_a_real_run_and_kept(keyed, api, pictures_server):
    from image_batch.descriptions.references import LOOPBACK_VARIABLE

    keyed.env[LOOPBACK_VARIABLE] = "1"
    root = keyed.root
    data = picture(root / "scratch.png", color=(1, 2, 3))
    pictures_server.files["/shop/mug.png"] = data
    url = f"{pictures_server.url}/shop/mug.png"
    keyed.sheet = write_sheet(
        root,
        [
            ("a", "Shop", "the mug on a beach", url, ""),
            ("b", "Shop", "the mug in snow", url, ""),
            ("c", "Shop", "a cup", "", ""),
        ],
    )
    dry = keyed.snakemake("-n", "--config", f"input_csv={keyed.sheet}")
    assert "1 picture(s) named by an address are not fetched yet" in dry.output
    # (their rows' requests are not known before the fetch: the estimate says it counts them as to pay)
    assert "the estimate counts their 2 image(s) as to pay" in dry.output, dry.output[-3000:]
    assert pictures_server.served == [] and not (root / "results/references").exists()

    keyed.snakemake("--config", f"input_csv={keyed.sheet}")
    assert pictures_server.served == ["/shop/mug.png"]  # once, for both rows
    assert [call["images"] for call in edit_calls(api)] == [[data], [data]]
    kept = root / f"results/references/{sha(data)}.png"
    assert kept.read_bytes() == data
    assert sidecar(root, "a")["references"] == [{"path": url, "sha256": sha(data), "kept": str(kept.relative_to(root))}]

    # later runs use the copy: no fetch, and a rebuild is served from the store
    pictures_server.files["/shop/mug.png"] = picture(root / "scratch.png", color=(9, 9, 9))
    api.reset()
    for image in (root / "results/images/shop").glob("*.png"):
        image.unlink()
    again = keyed.snakemake("--config", f"input_csv={keyed.sheet}")
    assert pictures_server.served == ["/shop/mug.png"] and api.paid_calls == []
    assert "not fetched yet" not in again.output


def test_an_address_that_gives_no_picture_is_a_sheet_error(keyed, api, pictures_server):
    from image_batch.descriptions.references import LOOPBACK_VARIABLE

    keyed.env[LOOPBACK_VARIABLE] = "1"
    pictures_server.files["/notes.png"] = b"not a picture"
    for path, expected in (("/gone.png", "could not be fetched (HTTP 404"), ("/notes.png", "is not a picture")):
        keyed.sheet = write_sheet(keyed.root, [("a", "Shop", "a mug", f"{pictures_server.url}{path}", "")])
        result = keyed.snakemake("--config", f"input_csv={keyed.sheet}", check=False)
        assert result.returncode != 0 and "Traceback" not in result.output
        assert f"line 2, column reference: {pictures_server.url}{path} {expected}" in result.output
    assert api.calls == [] and not (keyed.root / "results/references").exists()


def test_gemini_limits_and_a_picture_changed_after_planning(tmp_path, monkeypatch):
    from image_batch.common.errors import SheetError
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(references, "_cache", {})
    settings = settings_for(gemini={"model": "gemini-3-pro-image"})
    picture(tmp_path / "sheets/a.png")
    many = Row(2, "many", "Shop", "shop", "a mug", reference=";".join(["a.png"] * 15))
    with pytest.raises(SheetError) as caught:
        build_specs([many], settings, "gemini", "sheets/input.csv", environ={})
    assert "line 2, column reference: 15 pictures; provider gemini takes at most 14" in str(caught.value)
    (tmp_path / "sheets/big.png").write_bytes(picture(tmp_path / "sheets/b.png") + b"\0" * (11 * 1024 * 1024))
    heavy = Row(2, "heavy", "Shop", "shop", "a mug", reference="big.png;big.png")
    with pytest.raises(SheetError) as caught:
        build_specs([heavy], settings, "gemini", "sheets/input.csv", environ={})
    assert "the pictures together are 22.0 MB; provider gemini takes under 20 MB in one request" in str(caught.value)

    ok = Row(2, "ok", "Shop", "shop", "a mug", reference="a.png")
    (spec,) = build_specs([ok], settings, "gemini", "sheets/input.csv", environ={})
    assert references.load(spec, "sheets/input.csv").images[0][1] == (tmp_path / "sheets/a.png").read_bytes()
    picture(tmp_path / "sheets/a.png", color=(1, 1, 1))  # replaced after planning: not sent as planned
    with pytest.raises(references.ReferenceChanged, match="a.png changed since the run was planned"):
        references.load(spec, "sheets/input.csv")


def test_variants_of_a_row_with_pictures_are_edits_of_the_same_pictures(keyed, api):
    """Per-row settings, variants and pictures in one row: each candidate is its own edit request
    carrying the row's pictures, at the row's own size."""
    root = keyed.root
    mug = picture(root / "sheets/pics/mug.png", color=(250, 250, 250))
    sheet = root / "sheets/input.csv"
    sheet.write_text(
        "image_id,context,description,reference,size,variants\r\n"
        "mug,Shop,the mug on a beach,pics/mug.png,1536x1024,2\r\nplain,Shop,a plain red mug,,,\r\n",
        newline="",
    )
    result = keyed.main("sheets/input.csv")
    assert result.returncode == 0, result.output[-3000:]
    edits = edit_calls(api)
    assert len(edits) == 2 and len(api.paid_calls) == 3
    for image_id in ("mug", "mug-2"):
        made = sidecar(root, image_id)
        assert made["references"][0]["sha256"] == sha(mug) and made["size"] == "1536x1024"
    assert sidecar(root, "mug-2")["candidate"] == 2 and "references" not in sidecar(root, "plain")
    assert keyed.main("sheets/input.csv").returncode == 0 and len(api.paid_calls) == 3


def test_a_picture_replaced_with_its_size_and_mtime_kept_is_still_seen(edits, api):
    """A picture replaced by one of the same size whose mtime was kept (cp -p, rsync -a, a restore
    from a backup) is a new picture: what a real run learnt of the old one (pictures.json, by path,
    size and mtime) must not stand for it, or the row would keep its old image unnoticed (or fail
    at every run with 'changed since the run was planned')."""

    def flat(color):  # an uncompressed PNG: any colour gives the same number of bytes
        out = io.BytesIO()
        Image.new("RGB", (32, 24), color).save(out, format="PNG", compress_level=0)
        return out.getvalue()

    mug = edits.root / "sheets/pics/mug.png"
    mug.write_bytes(flat((250, 250, 250)))
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert (edits.root / "results/references/pictures.json").exists()
    before = mug.stat()
    api.reset()
    new = flat((0, 120, 0))
    assert len(new) == before.st_size
    mug.write_bytes(new)
    os.utime(mug, ns=(before.st_atime_ns, before.st_mtime_ns))
    edits.snakemake("--config", f"input_csv={edits.sheet}")
    assert [call["body"]["prompt"] for call in api.paid_calls] == ["the mug on a beach"]
    assert edit_calls(api)[0]["images"][0] == new
    assert sidecar(edits.root, "edit")["references"][0]["sha256"] == sha(new)


def _three_rows_with_a_picture_each(tmp_path, monkeypatch, provider):
    """Rows r0..r2 of sheets/input.csv on ``provider``, each naming its own picture p<n>.png (each
    a different colour): (specs, requests by store key, settings)."""
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from image_batch.images.store import request_key
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(references, "_cache", {})
    settings = settings_for(input_csv="sheets/input.csv", provider=provider)
    rows = []
    for n in range(3):
        picture(tmp_path / f"sheets/p{n}.png", color=(n, 0, 0))
        rows.append(Row(n + 2, f"r{n}", "Shop", "shop", f"photo {n}", reference=f"p{n}.png"))
    specs = build_specs(rows, settings, provider, "sheets/input.csv", environ={})
    return specs, {request_key(s["request"]): s["request"] for s in specs}, settings


def test_batch_edit_lines_read_their_pictures_one_input_file_at_a_time(tmp_path, monkeypatch):
    """Batch mode with thousands of product photos: each input file is built, and its pictures
    read, when it is submitted, not all at once (they would all be in memory, as raw bytes and as
    data URLs); every picture is still checked against its hash before the first batch."""
    from image_batch.default_plugins.openai_images import OpenAIImagesProvider
    from image_batch.descriptions import references
    from image_batch.images.batch import edit_inputs, iter_input_files

    specs, requests, settings = _three_rows_with_a_picture_each(tmp_path, monkeypatch, "openai")
    provider = OpenAIImagesProvider({"model": "m"})

    pictures = edit_inputs(specs, requests, settings)
    pictures.verify()
    files = iter_input_files(requests, provider, 1, 10**8, pictures, "/v1/images/edits")
    first, _ = next(files)
    assert references.data_url((tmp_path / "sheets/p0.png").read_bytes(), "image/png") in first.decode()
    picture(tmp_path / "sheets/p2.png", color=(9, 9, 9))  # replaced while the first file is submitted
    next(files)
    with pytest.raises(references.ReferenceChanged, match="p2.png changed"):
        next(files)  # p2 was not read before its own file was built
    with pytest.raises(references.ReferenceChanged, match="p2.png changed"):
        edit_inputs(specs, requests, settings).verify()  # (a real run checks before the first batch)


def test_gemini_batch_lines_read_their_pictures_one_batch_at_a_time(tmp_path, monkeypatch):
    """Gemini's batch mode, like OpenAI's: each batch's inline requests are built, and their
    pictures read, when that batch is submitted, not every batch's before the first submit."""
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.descriptions import references
    from image_batch.images.batch import edit_inputs
    from image_batch.images.gemini_batch import chunks

    specs, requests, settings = _three_rows_with_a_picture_each(tmp_path, monkeypatch, "gemini")
    provider = GeminiImagesProvider({"model": "m"})

    pictures = edit_inputs(specs, requests, settings)
    pictures.verify()
    batches = iter(chunks(requests, provider, 1, 10**8, pictures))
    _, [(_, body)], _ = next(batches)
    assert body["contents"][0]["parts"][1]["inline_data"]["data"] in [
        (tmp_path / f"sheets/p{n}.png").read_bytes() for n in range(3)
    ]
    for n in range(3):  # every picture replaced while the first batch is submitted
        picture(tmp_path / f"sheets/p{n}.png", color=(9, 9, 9))
    with pytest.raises(references.ReferenceChanged, match="changed"):
        next(batches)  # the second batch's picture was not read before its own batch was built


def test_a_picture_too_large_for_batch_mode_is_one_line_at_its_row_not_one_per_variant(tmp_path, monkeypatch):
    from image_batch.descriptions import references
    from image_batch.descriptions.sheet import Row
    from image_batch.descriptions.specs import build_specs
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(references, "_cache", {})
    settings = settings_for(input_csv="sheets/input.csv")
    big = tmp_path / "sheets/big.png"
    big.write_bytes(picture(tmp_path / "sheets/tmp.png") + b"\0" * (15 * 1024 * 1024))
    row = Row(2, "edit", "Shop", "shop", "a mug", reference="big.png", settings=(("variants", "3"),))
    specs = build_specs([row], settings, "openai", "sheets/input.csv", environ={})
    assert [s["image_id"] for s in specs] == ["edit", "edit-2", "edit-3"]
    problems = references.batch_problems(specs, {"edit": "line 2"}, "openai", "batch")
    assert problems == [
        "line 2, column reference: big.png is 15.0 MB; in mode: batch OpenAI takes pictures up to 15 MB (sent as "
        "data URLs): make it smaller or use mode: live"
    ]
