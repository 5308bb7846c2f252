"""main.py's own options (--model, --size, --quality, --mode, --set) and dotted keys after --config:
what people reach for first, each reaching the API as asked, never a traceback."""

import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("image_batch_main", REPO / "main.py")
main = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main)

SHEET = "image_id,context,description\na1,Nature,a fox\na2,Nature,an owl\n"


def test_dotted_keys_set_one_key_of_a_section():
    given = main.overrides(["openai.model=gpt-image-2", "openai.quality=high", "variant=2", "sync.prefix=a/"])
    assert given == {"openai": {"model": "gpt-image-2", "quality": "high"}, "variant": 2, "sync": {"prefix": "a/"}}
    config = main.merged({"openai": {"model": "x", "size": "1024x1024"}, "mode": "live"}, given)
    assert config["openai"] == {"model": "gpt-image-2", "size": "1024x1024", "quality": "high"}
    items = main.config_items(given)
    assert "openai={model: gpt-image-2, quality: high}" in items and "variant=2" in items


@pytest.mark.parametrize("item", ["openai.=x", ".model=x", "novalue", "=x"])
def test_a_malformed_key_is_a_clear_error(item):
    with pytest.raises(main.UserError, match="expected KEY=VALUE"):
        main.overrides([item])


def test_options_go_to_the_configured_providers_section():
    args = main.parser().parse_intermixed_args(["s.csv", "--model", "m", "--quality", "high", "--mode", "batch"])
    assert main.option_overrides(args, {"provider": "auto"}) == ["openai.model=m", "openai.quality=high", "mode=batch"]
    assert main.option_overrides(args, {"provider": "mine"})[0] == "mine.model=m"


def test_options_go_to_gemini_when_auto_picks_gemini(monkeypatch):
    """provider auto with only a Gemini key makes Gemini images: --model goes to gemini.model (it was
    put in openai.model, unused, and the run paid for the config's Gemini model instead)."""
    for name in ("AI_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")
    args = main.parser().parse_intermixed_args(["s.csv", "--model", "gemini-3-pro-image"])
    assert main.option_overrides(args, {"provider": "auto"}) == ["gemini.model=gemini-3-pro-image"]
    monkeypatch.setenv("AI_API_KEY", "sk-test")  # both keys: auto picks openai
    assert main.option_overrides(args, {"provider": "auto"}) == ["openai.model=gemini-3-pro-image"]


def test_size_goes_to_gemini_image_size_and_quality_is_refused_for_gemini():
    """--size 2K with provider gemini is gemini.image_size (gemini.size is no setting: the run stopped
    on "unknown key 'size'"); Gemini takes no quality, said in one line naming what it takes."""
    from image_batch.common.errors import UserError

    args = main.parser().parse_intermixed_args(["s.csv", "--model", "gemini-3-pro-image", "--size", "2K"])
    assert main.option_overrides(args, {"provider": "gemini"}) == [
        "gemini.model=gemini-3-pro-image",
        "gemini.image_size=2K",
    ]
    args = main.parser().parse_intermixed_args(["s.csv", "--quality", "high"])
    with pytest.raises(UserError, match=r"--quality: gemini takes no quality .*gemini.image_size"):
        main.option_overrides(args, {"provider": "gemini"})


def test_options_and_dotted_config_reach_the_api(keyed, api):
    (keyed.root / "input.csv").write_text(SHEET)
    options = ("--model", "gpt-image-2", "--quality", "high")
    done = keyed.main("input.csv", *options, "--", "--config", "openai.size=1536x1024")
    assert done.returncode == 0, done.output[-3000:]
    assert "Traceback" not in done.output
    bodies = [call["body"] for call in api.paid_calls]
    assert len(bodies) == 2
    assert {(b["model"], b["quality"], b["size"]) for b in bodies} == {("gpt-image-2", "high", "1536x1024")}
    # the config file's other settings of the section are kept (merged, not replaced)
    assert {b.get("output_format") for b in bodies} == {"png"}


def test_set_takes_any_key_and_a_bad_value_is_one_line(keyed, api):
    (keyed.root / "input.csv").write_text(SHEET)
    refused = keyed.main("input.csv", "--set", "openai.quality=superb")
    assert refused.returncode != 0 and "Traceback" not in refused.output
    assert "superb" in refused.output and api.calls == []


def test_a_misspelled_model_is_refused_before_any_call_with_the_fix(keyed, api):
    (keyed.root / "input.csv").write_text(SHEET)
    refused = keyed.main("input.csv", "--model", "gpt-image-2.5-sunbrust")
    assert refused.returncode != 0 and "Traceback" not in refused.output, refused.output[-3000:]
    assert "did you mean 'gpt-image-2.5-sunburst'" in refused.output and "given on the command line" in refused.output
    assert api.calls == []


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("--sise", "--sise: did you mean --size?"),
        ("--qualty=high", "--qualty: did you mean --quality?"),
        ("--forceall", "a Snakemake option goes after --, e.g. python main.py sheet.csv -- --forceall"),
    ],
)
def test_a_misspelled_or_foreign_option_says_what_was_meant(typed, hint, capsys):
    with pytest.raises(SystemExit) as stopped:
        main.parser().parse_intermixed_args(["s.csv", typed])
    assert stopped.value.code == 2
    assert hint in capsys.readouterr().err


def test_the_line_before_planning_says_rows_read_not_ok_when_a_cell_is_refused_next(keyed, api):
    """main.py reads the sheet (columns, ids, text) before the workflow checks each row's settings
    and pictures: its line must not say "OK" just before the cell errors that planning finds."""
    (keyed.root / "input.csv").write_text("image_id,context,description,quality\nr1,Shop,a mug,ultra\n")
    refused = keyed.main("input.csv")
    assert refused.returncode != 0 and "column quality" in refused.output, refused.output[-3000:]
    assert "rows OK" not in refused.output and "input.csv: 1 row(s) read" in refused.output
    assert api.calls == []
