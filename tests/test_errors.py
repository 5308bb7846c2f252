"""Issue 15 and 20: every problem a user can meet at the start ends in one clear line (what is wrong,
and the fix), a non-zero exit and no traceback, through `snakemake` and `python main.py`, before
any paid call; every field sent to the API is checked first; `.env` is read as documented.
Each case runs real processes against the stand-in API and moto's S3."""

import pytest

from tests.conftest import API_KEY, update_config

SHEET = "image_id,context,description\r\nfox,Nature,a red fox in snow\r\nowl,Nature,an owl at dusk\r\n"


@pytest.fixture
def user(keyed):
    """A project with a sheet of its own (mine.csv) and a key for the stand-in."""
    (keyed.root / "mine.csv").write_text(SHEET, newline="")
    return keyed


def refused(result, *expected):
    """``result`` failed with one clear line holding every ``expected`` text, and no traceback."""
    out = result.output
    assert result.returncode != 0, out[-3000:]
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    lines = [line for line in out.splitlines() if all(text in line for text in expected)]
    assert lines, f"no line with {expected} in:\n{out[-3000:]}"
    return lines[0]


def both(user, *config):
    """The same invocation through snakemake (a real run) and through main.py."""
    return [
        user.snakemake("--config", "input_csv=mine.csv", *config, check=False),
        user.main("mine.csv", *(["--", "--config", *config] if config else [])),
    ]


# -- issue 15 #11: settings that reach the API are checked before any call -------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("openai={moderation: strict}", ("config openai.moderation: 'strict'", "use one of: low, auto")),
        ("openai={output_compression: 150}", ("config openai.output_compression: 150", "0 to 100")),
        (
            "openai={output_compression: 50}",
            ("config openai.output_compression", "only with output_format jpeg or webp", "not png"),
        ),
        ("batch={completion_window: 48h}", ("config batch.completion_window: '48h'", "use one of: 24h")),
        ("openai={qualty: high}", ("config openai.qualty: unknown key", "did you mean 'quality'?")),
    ],
)
def test_a_setting_the_api_would_refuse_is_refused_before_any_call(user, api, given, expected):
    for result in both(user, given, "mode=batch" if "batch" in given else "mode=live"):
        refused(result, *expected, "(given with --config)")
    assert api.calls == [] and api.batch_requests == []


def test_a_bad_setting_in_the_config_file_names_the_file(user, api):
    update_config(user.root, openai={"moderation": "strict"})
    for result in both(user):
        refused(result, "config openai.moderation: 'strict'", "(in config/config.yaml)")
    assert api.calls == []


def test_the_checked_fields_reach_the_api_as_set(user, api):
    update_config(user.root, openai={"output_format": "jpeg", "output_compression": 80, "moderation": "low"})
    user.snakemake("--config", "input_csv=mine.csv")
    bodies = [call["body"] for call in api.paid_calls]
    assert len(bodies) == 2
    assert all((b["output_compression"], b["moderation"], b["output_format"]) == (80, "low", "jpeg") for b in bodies)
    assert API_KEY not in str(bodies)
