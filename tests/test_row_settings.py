"""Per-row settings and variants (issue 18): the optional sheet columns provider, model, size,
quality, ..., variants. Unit tests of descriptions.row_settings through build_specs, then end to end
through `snakemake` against the stand-ins (live, batch, two providers)."""

import json

import pytest

from image_batch.common.errors import SheetError
from image_batch.descriptions.sheet import read_sheet
from image_batch.descriptions.specs import build_specs, request_path, spec_bytes
from image_batch.providers import provider_class
from tests.conftest import API_KEY, settings_for, update_config
from tests.support.fake_gemini import FakeGemini

ENV = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}


def specs_of(tmp_path, text, **config):
    path = tmp_path / "sheet.csv"
    path.write_text(text, encoding="utf-8")
    settings = settings_for(input_csv=str(path), **config)
    return build_specs(read_sheet(path), settings, "openai", path, environ=ENV)


# -- unit: the request a row's cells make ----------------------------------------------------------


def test_a_sheet_without_the_columns_makes_the_requests_of_before(tmp_path):
    """The request of a row without cells is built as before these columns existed."""
    specs = specs_of(tmp_path, "image_id,context,description,notes\na,C,a red mug,x\n")
    settings = settings_for()
    params = provider_class("openai").request_params(settings.section("openai"), ENV)
    request = {"provider": "openai", **params, "prompt": "a red mug"}
    old = {"image_id": "a", "context": "C", "folder": "c", "request": request}
    assert specs == [old] and spec_bytes(specs[0]) == spec_bytes(old)


def test_a_cell_makes_the_request_the_config_would(tmp_path):
    by_cell = specs_of(
        tmp_path,
        "image_id,context,description,Size,Output-Compression,output format\na,C,a mug,1536x1024,80,webp\n",
    )
    by_config = specs_of(
        tmp_path,
        "image_id,context,description\na,C,a mug\n",
        openai={"size": "1536x1024", "output_compression": 80, "output_format": "webp"},
    )
    assert by_cell[0]["request"]["output_compression"] == 80  # an integer, as the config gives it
    assert spec_bytes(by_cell[0]) == spec_bytes(by_config[0])
    assert request_path(by_cell[0]) == request_path(by_config[0])  # same request file, same store key


def test_a_cell_changes_only_its_row(tmp_path):
    before = specs_of(tmp_path, "image_id,context,description,quality\na,C,one,\nb,C,two,\nc,C,three,\n")
    after = specs_of(tmp_path, "image_id,context,description,quality\na,C,one,\nb,C,two,high\nc,C,three,\n")
    changed = [s["image_id"] for s, t in zip(before, after, strict=True) if spec_bytes(s) != spec_bytes(t)]
    assert changed == ["b"] and after[1]["request"]["quality"] == "high"


def test_bad_cells_are_sheet_errors_naming_row_and_column(tmp_path):
    text = (
        "image_id,context,description,aspect_ratio,output_format,variants\n"
        "a,C,one,16:9,,\n"
        "b,C,two,,tiff,\n"
        "c,C,three,,,two\n"
        "d,C,four,,,0\n"
        "e,C,five,,,101\n"
        "f,C,six,,,100\n"
    )
    with pytest.raises(SheetError) as caught:
        specs_of(tmp_path, text)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("line 2, column aspect_ratio: the openai provider does not take aspect_ratio")
    assert problems[1].startswith("line 3, column output_format: 'tiff' is not a value openai.output_format takes")
    assert problems[2].startswith("line 4, column variants: variants 'two' is not a whole number")
    assert problems[3].startswith("line 5, column variants: variants 0 is out of range")
    assert problems[4].startswith("line 6, column variants: variants 101 is out of range")
    with pytest.raises(SheetError, match="line 2, column output_compression: output_compression is taken only with"):
        specs_of(tmp_path, "image_id,context,description,output_compression\na,C,one,80\n")
    # a number out of range says the range, not "use a whole number" (150 is one)
    text = "image_id,context,description,output_format,output_compression\na,C,one,jpeg,150\nb,C,two,webp,-1\n"
    with pytest.raises(SheetError) as caught:
        specs_of(tmp_path, text)
    assert [p.split(": ", 1)[1] for p in caught.value.problems] == [
        "'150' is not a value openai.output_compression takes; use a whole number from 0 to 100",
        "'-1' is not a value openai.output_compression takes; use a whole number from 0 to 100",
    ], caught.value.problems


def test_variants_are_their_own_requests(tmp_path):
    specs = specs_of(tmp_path, "image_id,context,description,variants\na,C,one,3\nb,C,two,\n")
    assert [s["image_id"] for s in specs] == ["a", "a-2", "a-3", "b"]
    assert "candidate" not in specs[0]["request"] and "row" not in specs[0]
    assert [s["request"].get("candidate") for s in specs[1:3]] == [2, 3]
    assert (
        specs[1]["row"] == "a"
        and {k: v for k, v in specs[1]["request"].items() if k != "candidate"} == specs[0]["request"]
    )
    # the config default, and a cell overriding it
    specs = specs_of(tmp_path, "image_id,context,description,variants\na,C,one,1\nb,C,two,\n", variants=2)
    assert [s["image_id"] for s in specs] == ["a", "b", "b-2"]


def test_a_variant_id_taken_by_another_row_is_refused(tmp_path):
    with pytest.raises(SheetError) as caught:
        specs_of(tmp_path, "image_id,context,description,variants\nx,A,one,2\nX-2,B,two,\n")
    (problem,) = caught.value.problems
    assert problem.startswith("line 2, column variants: variant 2 of row 'x' would be image 'x-2'")
    assert "the row on line 3" in problem
    long_id = "x" * 127
    with pytest.raises(SheetError, match="longer than 128 characters"):
        specs_of(tmp_path, f"image_id,context,description,variants\n{long_id},A,one,2\n")


# -- end to end --------------------------------------------------------------------------------------

HEADER = "image_id,context,description,model,size,quality,variants\n"


def write_sheet(runner, text):
    (runner.root / "input.csv").write_text(text, encoding="utf-8")


def sidecar(root, name):
    return json.loads((root / "results/images" / f"{name}.json").read_text())


def body(call):
    return call["body"] if isinstance(call["body"], dict) else json.loads(call["body"])


def by_prompt(calls):
    return {body(c)["prompt"]: body(c) for c in calls}


def mtimes(root):
    return {p.name: p.stat().st_mtime_ns for p in (root / "results/images").rglob("*") if p.is_file()}


def test_per_row_settings_live_and_a_changed_cell_remakes_one_image(keyed, api):
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(
        keyed,
        HEADER
        + "wide,Shop,a wide banner,,1536x1024,,\n"
        + "hero,Shop,a hero shot,,,high,\n"
        + "mini,Shop,a small tile,gpt-image-2,,low,\n"
        + "plain,Shop,a plain tile,,,,\n",
    )
    dry = keyed.snakemake("-n")
    assert "4 of 4 image(s) to make" in dry.output
    assert "1 x gpt-image-2 low 1024x1024" in dry.output  # each row priced at its own settings
    assert "1 x gpt-image-2.5-sunburst high 1024x1024" in dry.output
    assert "1 x gpt-image-2.5-sunburst medium 1536x1024" in dry.output
    keyed.snakemake()
    got = by_prompt(api.paid_calls)
    assert len(api.paid_calls) == 4
    assert (got["a wide banner"]["size"], got["a wide banner"]["quality"]) == ("1536x1024", "medium")
    assert got["a hero shot"]["quality"] == "high" and got["a hero shot"]["model"] == "gpt-image-2.5-sunburst"
    assert (got["a small tile"]["model"], got["a small tile"]["quality"]) == ("gpt-image-2", "low")
    assert (got["a plain tile"]["size"], got["a plain tile"]["quality"]) == ("1024x1024", "medium")
    assert sidecar(keyed.root, "shop/wide")["size"] == "1536x1024"
    assert sidecar(keyed.root, "shop/mini")["model"] == "gpt-image-2"
    assert sidecar(keyed.root, "shop/hero")["quality"] == "high"

    before = mtimes(keyed.root)
    write_sheet(
        keyed,
        HEADER
        + "wide,Shop,a wide banner,,1536x1024,,\n"
        + "hero,Shop,a hero shot,,,medium,\n"  # the only change
        + "mini,Shop,a small tile,gpt-image-2,,low,\n"
        + "plain,Shop,a plain tile,,,,\n",
    )
    keyed.snakemake()
    assert len(api.paid_calls) == 5 and body(api.paid_calls[-1])["prompt"] == "a hero shot"
    after = mtimes(keyed.root)
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == ["hero.json", "hero.png"]


def test_a_bad_cell_stops_before_any_call(keyed, api):
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(keyed, HEADER + "a,Shop,one,,,,\nb,Shop,two,,,ultra,\n")
    result = keyed.snakemake(check=False)
    assert result.returncode != 0 and api.calls == []
    lines = [line for line in result.output.splitlines() if "column quality" in line]
    assert len(lines) == 1 and "input.csv, line 3, column quality: openai.quality 'ultra' is not taken" in lines[0]
    assert "Traceback" not in result.output

    write_sheet(keyed, "image_id,context,description,aspect_ratio\na,Shop,one,16:9\n")
    result = keyed.snakemake(check=False)
    assert result.returncode != 0 and api.calls == []
    assert "input.csv, line 2, column aspect_ratio: the openai provider does not take aspect_ratio" in result.output


def test_variants_up_pays_only_the_new_down_reports_removed_and_collisions_refused(keyed, api):
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(keyed, "image_id,context,description,variants\nmug,Shop,a mug,2\ncup,Shop,a cup,\n")
    keyed.snakemake()
    assert len(api.paid_calls) == 3
    assert sorted(p.name for p in (keyed.root / "results/images/shop").glob("*.png")) == [
        "cup.png",
        "mug-2.png",
        "mug.png",
    ]
    side = sidecar(keyed.root, "shop/mug-2")
    assert (side["row"], side["candidate"], side["image_id"]) == ("mug", 2, "mug-2")
    assert side["cost"]["usd"] > 0
    manifest = (keyed.root / "results/manifest.csv").read_text()
    assert "\nmug-2,Shop,shop,a mug," in manifest

    write_sheet(keyed, "image_id,context,description,variants\nmug,Shop,a mug,4\ncup,Shop,a cup,\n")
    before = mtimes(keyed.root)
    up = keyed.snakemake()
    assert len(api.paid_calls) == 5  # two more, for mug-3 and mug-4
    assert "2 to pay for" in up.output
    after = mtimes(keyed.root)
    assert all(after[name] == before[name] for name in before)

    write_sheet(keyed, "image_id,context,description,variants\nmug,Shop,a mug,2\ncup,Shop,a cup,\n")
    synced = keyed.root / "results/bucket/shop"
    assert (synced / "mug-4.png").exists()
    down = keyed.snakemake("--config", "sync={delete_removed: true}")
    assert len(api.paid_calls) == 5
    assert "2 image(s) in results/images no row asks for any more (e.g. shop/mug-3)" in down.output
    assert sorted(p.name for p in synced.glob("*.png")) == ["cup.png", "mug-2.png", "mug.png"]

    write_sheet(keyed, "image_id,context,description,variants\nmug,Shop,a mug,2\nmug-2,Other,a mug again,\n")
    refused = keyed.snakemake(check=False)
    assert refused.returncode != 0 and len(api.paid_calls) == 5
    assert "variant 2 of row 'mug' would be image 'mug-2', the id of the row on line 3" in refused.output


def test_batch_mode_with_two_models_submits_one_file_per_model(runner):
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key=API_KEY, fixed_created=1_790_000_000) as api:
        runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        update_config(runner.root, input_csv="input.csv", mode="batch", batch={"poll_seconds": 0.02})
        write_sheet(
            runner,
            HEADER
            + "a,Shop,one,,,,\n"
            + "b,Shop,two,gpt-image-2,,low,2\n"
            + "c,Shop,three,,1536x1024,,\n"
            + "d,Shop,four,gpt-image-2,,low,\n",
        )
        runner.snakemake()
        assert api.calls == [] and len(api.batches_created) == 2
        lines = api.batch_lines
        assert len(lines) == 5 and len(api.batch_paid_lines) == 5  # each request paid once
        mini = sidecar(runner.root, "shop/b-2")
        assert mini["model"] == "gpt-image-2" and mini["cost"]["price"] == "batch"
        assert sidecar(runner.root, "shop/c")["size"] == "1536x1024"
        again = runner.snakemake()
        assert len(api.batches_created) == 2 and len(api.batch_lines) == 5
        assert "nothing to do" in again.output


def test_a_gemini_row_among_openai_rows(keyed, api):
    update_config(keyed.root, input_csv="input.csv", gemini={"model": "gemini-3-pro-image"})
    write_sheet(
        keyed,
        "image_id,context,description,provider,aspect_ratio,size\n"
        "a,Shop,an openai tile,,,1536x1024\n"
        "g,Shop,a gemini banner,gemini,16:9,\n",
    )
    # no Gemini key: a clear error before any call
    result = keyed.snakemake(check=False)
    assert result.returncode != 0 and api.calls == []
    assert "asks for provider gemini, but GEMINI_API_KEY (or GOOGLE_API_KEY) is not set" in result.output
    with FakeGemini(api_key="AIza-test-key") as gemini:
        keyed.env.update(GEMINI_API_KEY="AIza-test-key", GOOGLE_GEMINI_BASE_URL=gemini.base_url)
        dry = keyed.snakemake("-n")
        assert "1 x gemini-3-pro-image default quality default size" in dry.output, dry.output[-2000:]
        assert "with provider openai (AI_API_KEY is set, rows of the sheet on gemini)" in dry.output
        keyed.snakemake()
        assert len(api.paid_calls) == 1 and body(api.paid_calls[0])["size"] == "1536x1024"
        assert len(gemini.paid_calls) == 1
        side = sidecar(keyed.root, "shop/g")
        assert (side["provider"], side["aspect_ratio"], side["endpoint"]) == ("gemini", "16:9", gemini.base_url)
        assert sidecar(keyed.root, "shop/a")["provider"] == "openai"


def test_a_failed_variant_is_reported_at_its_rows_place(keyed, api):
    api.set_behavior("REFUSED", "moderation")
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(keyed, "image_id,context,description,variants\nok,Shop,a mug,\nbad,Shop,a REFUSED mug,2\n")
    result = keyed.snakemake(check=False)
    assert result.returncode != 0
    assert "input.csv, line 3, image_id bad-2 (Shop):" in result.output, result.output[-3000:]


def test_placeholders_leave_out_the_settings_they_have_no_use_for(tmp_path):
    """No key: the offline placeholders of rows with OpenAI cells are made (the keyed requests, built
    beside them for the estimate, still check the cells)."""
    path = tmp_path / "sheet.csv"
    path.write_text("image_id,context,description,quality,size,Provider\na,C,one,high,,\nb,C,two,,640x480,OpenAI\n")
    rows = read_sheet(path)
    offline = build_specs(rows, settings_for(input_csv=str(path)), "offline", path, environ=ENV)
    plain = build_specs(read_sheet(_plain(tmp_path)), settings_for(), "offline", path, environ=ENV)
    assert offline[0]["request"] == plain[0]["request"] | {"prompt": "one"}
    assert offline[1]["request"]["provider"] == "openai" and offline[1]["request"]["size"] == "640x480"


def _plain(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("image_id,context,description\na,C,one\n")
    return path


def test_batch_mode_with_two_providers_sends_each_to_its_batch_api(runner):
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key=API_KEY, fixed_created=1_790_000_000) as api, FakeGemini(api_key="AIza-k") as gemini:
        runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        runner.env.update(GEMINI_API_KEY="AIza-k", GOOGLE_GEMINI_BASE_URL=gemini.base_url)
        update_config(
            runner.root,
            input_csv="input.csv",
            mode="batch",
            batch={"poll_seconds": 0.02},
            gemini={"model": "gemini-3-pro-image"},
        )
        write_sheet(
            runner,
            "image_id,context,description,provider,variants\na,Shop,one,,\ng,Shop,two,gemini,2\nb,Shop,three,,\n",
        )
        runner.snakemake()
        assert api.calls == [] and gemini.calls == []  # nothing at full price
        assert len(api.batches_created) == 1 and len(api.batch_paid_lines) == 2
        assert gemini.batch_creates == 1 and len(gemini.batch_lines) == 2
        assert sidecar(runner.root, "shop/g-2")["cost"]["price"] == "batch"
        assert sidecar(runner.root, "shop/b")["provider"] == "openai"
        again = runner.snakemake()
        assert len(api.batches_created) == 1 and gemini.batch_creates == 1
        assert "nothing to do" in again.output


def test_a_workbook_may_hold_counts_as_numbers(tmp_path):
    from tests.test_sheet_formats import write_xlsx

    rows = [("image_id", "context", "description", "variants", "output_compression", "output_format")]
    rows += [("a", "C", "one", 3, 80.0, "webp")]
    path = write_xlsx(tmp_path / "book.xlsx", rows, formats={(2, 4): "0.00"})  # shown as 3.00: still 3
    specs = build_specs(read_sheet(path), settings_for(input_csv=str(path)), "openai", path, environ=ENV)
    assert [s["image_id"] for s in specs] == ["a", "a-2", "a-3"]
    assert specs[0]["request"]["output_compression"] == 80


def test_a_gemini_row_takes_gemini_settings_only(tmp_path):
    config = {"gemini": {"model": "gemini-3-pro-image"}}
    specs = specs_of(
        tmp_path, "image_id,context,description,provider,image_size,aspect_ratio\ng,C,one,gemini,2K,16:9\n", **config
    )
    path = tmp_path / "plain.csv"
    path.write_text("image_id,context,description\ng,C,one\n")
    settings = settings_for(
        input_csv=str(path), gemini={"model": "gemini-3-pro-image", "image_size": "2K", "aspect_ratio": "16:9"}
    )
    (by_config,) = build_specs(read_sheet(path), settings, "gemini", path, environ=ENV)
    assert spec_bytes(specs[0]) == spec_bytes(by_config)
    with pytest.raises(SheetError, match="line 2, column quality: the gemini provider does not take quality"):
        specs_of(tmp_path, "image_id,context,description,provider,quality\ng,C,one,gemini,high\n", **config)


def test_the_example_sheet_with_per_row_settings_is_valid(monkeypatch):
    """config/example-advanced.csv: its rows' settings are all taken by their models, its pictures pass."""
    from image_batch.common.settings import Choices, Destination
    from image_batch.descriptions import row_settings
    from image_batch.plan import check_models
    from tests.conftest import REPO

    path = REPO / "config" / "example-advanced.csv"
    settings = settings_for(input_csv=str(path))
    rows = read_sheet(path)
    requests = row_settings.RowRequests(settings, "openai", ENV)
    specs = build_specs(rows, settings, "openai", path, environ=ENV, row_requests=requests)
    assert len(specs) == len(rows) + 3  # hero-01's two more candidates, mug-beach's second
    assert {s["request"]["provider"] for s in specs} == {"openai", "gemini"}
    edits = {s["image_id"] for s in specs if s.get("references")}
    assert edits == {"mug-beach", "mug-beach-2", "mug-logo"}  # its pictures are in config/pictures
    choices = Choices("openai", "test", Destination("local", "results/bucket", ""))
    assert check_models(settings, choices, specs, requests, path) == ([], [])


def test_with_no_key_at_all_a_row_on_another_provider_is_a_placeholder_too(runner):
    """No key at all (provider auto: placeholders): a row asking for gemini or openai is made as a
    placeholder like the others, not a stop (the keyless try of the advanced example); the estimate
    still prices it at its own provider."""
    (runner.root / "input.csv").write_text(
        "image_id,context,description,provider,aspect_ratio,size\n"
        "a,Shop,a red mug,,,1536x1024\nb,Shop,a tall poster,gemini,9:16,\n"
    )
    result = runner.main("input.csv")
    assert result.returncode == 0, result.output[-3000:]
    assert "OFFLINE MODE" in result.output and "asks for provider gemini" not in result.output
    for image_id in ("a", "b"):
        sidecar = json.loads((runner.root / f"results/images/shop/{image_id}.json").read_text())
        assert sidecar["provider"] == "offline"
    assert "gemini-nano-banana" in result.output  # the keyless estimate prices the gemini row


def test_an_offline_row_among_paid_rows_costs_nothing_in_the_estimate(keyed, api):
    """A row whose provider cell is offline is a placeholder: the estimate neither counts it as an
    image to pay for nor as an unpriced one (the summary then compares like with like)."""
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(keyed, "image_id,context,description,provider\na,Shop,a red mug,\nb,Shop,a blue mug,offline\n")
    dry = keyed.snakemake("-n")
    assert "2 of 2 image(s) to make" in dry.output
    assert "1 to pay for" in dry.output and "unpriced" not in dry.output, dry.output[-2000:]
    assert "offline-text-card" not in dry.output  # no price line for the placeholder
    result = keyed.snakemake()
    assert len(api.paid_calls) == 1
    assert "unpriced" not in result.output


def test_provider_offline_in_the_config_makes_every_row_a_placeholder(keyed, api):
    """provider: offline is "always the offline generator, no cost": a row whose provider cell names
    a paid provider is a placeholder too, even with its key set (a free try of a sheet pays nothing)."""
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(
        keyed,
        "image_id,context,description,provider,size,aspect_ratio\n"
        "a,Shop,a red mug,openai,1536x1024,\nb,Shop,a tall poster,gemini,,9:16\nc,Shop,a plain tile,,,\n",
    )
    keyed.env.update(GEMINI_API_KEY="g-test")
    result = keyed.main("input.csv", "--set", "provider=offline")
    assert result.returncode == 0, result.output[-3000:]
    assert api.calls == []
    for image_id in ("a", "b", "c"):
        assert sidecar(keyed.root, f"shop/{image_id}")["provider"] == "offline"
    assert "to pay for" not in result.output


def test_a_model_cell_of_another_provider_is_refused_before_any_call(keyed, api):
    """A Gemini model in the model cell of a row without a provider cell would go to OpenAI (and fail
    there, image by image): the catalogue knows whose model it is, so it is refused while planning,
    naming the row, the column and the fix."""
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(keyed, "image_id,context,description,model\na,Shop,one,\nb,Shop,two,gemini-nano-banana-2.1\n")
    result = keyed.snakemake(check=False)
    assert result.returncode != 0 and api.calls == []
    lines = [line for line in result.output.splitlines() if "column model" in line]
    assert len(lines) == 1, result.output[-3000:]
    assert "input.csv, line 3, column model: openai.model 'gemini-nano-banana-2.1' is a gemini model" in lines[0]
    assert "provider cell" in lines[0] and "Traceback" not in result.output


def test_a_command_line_setting_that_cells_override_is_said_once(keyed, api):
    """`python main.py sheet --quality low` (a cheap draft) still pays for a row's own `high`: the
    run says so in one line per setting, with how many rows and the first, before any call."""
    update_config(keyed.root, input_csv="input.csv")
    write_sheet(
        keyed,
        HEADER + "a,Shop,one,,,,\nb,Shop,two,,,high,\nc,Shop,three,,,high,\nd,Shop,four,gpt-image-2,,high,\n",
    )
    result = keyed.main("input.csv", "--quality", "low", "--estimate")
    assert result.returncode == 0, result.output[-3000:]
    lines = [line for line in result.output.splitlines() if "given on the command line is not used" in line]
    assert lines == [
        "Image.Batch: WARNING: openai.quality given on the command line is not used for 3 row(s) with a quality "
        "cell of their own (e.g. input.csv, line 3): a row's cell wins; empty those cells to use it"
    ]
    result = keyed.main("input.csv", "--estimate")  # the config's own value: cells override it quietly
    assert "is not used" not in result.output
    assert api.calls == []
