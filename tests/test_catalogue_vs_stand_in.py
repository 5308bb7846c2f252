"""The workflow's model catalogue (config/models.yaml) and the stand-in's model of the real API
(tests/support/openai_models.py) were written apart, from the same sources: they must agree, model by
model, on the test clock's date. Each setting one accepts the other accepts, and the other way round;
a disagreement means one of them is wrong about the real API (find out which, from the sources, and
fix that one with its source and date)."""

import pytest

from image_batch.costs.catalog import load_catalog
from tests.conftest import REPO
from tests.support import openai_models as real

CATALOG = load_catalog(REPO / "config" / "models.yaml")
TODAY = real.TODAY

# Values to try for each setting: every value either side names, plus values neither takes.
QUALITIES = sorted(set(real.QUALITIES_PLUS) | {"standard", "hd", "ultra"})
BACKGROUNDS = sorted(set(real.BACKGROUNDS) | {"none"})
OUTPUT_FORMATS = sorted(set(real.OUTPUT_FORMATS) | {"gif", "svg", "bmp"})
COMPLEXITIES = sorted(set(real.COMPLEXITIES) | {"extreme"})
SIZES = [
    *real.FIXED_SIZES,
    "256x256",
    "512x512",
    "1792x1024",
    "2048x2048",
    "2560x1440",
    "3840x2160",  # the most pixels and the longest side
    "1000x1000",  # not multiples of 16
    "3072x1024",  # a ratio of exactly 3:1
    "3120x1024",  # beyond 3:1
    "3856x1296",  # a side beyond 3840
    "800x800",  # too few pixels (640,000)
    "816x816",  # just enough (665,856)
    "3840x2176",  # too many pixels
    "1024",
    "big",
]


def stand_in_models():
    return sorted(real.MODELS)


def catalogue_names():
    """The OpenAI models the catalogue knows (the Gemini ones have their own stand-in)."""
    names = set(CATALOG.models) | set(CATALOG.aliases)
    return sorted(
        name
        for name in names
        if (CATALOG.lookup(name).provider or "openai") == "openai" and CATALOG.lookup(name).kind == "image"
    )


def catalogue_takes(model, **setting):
    problems, _ = CATALOG.check({"provider": "openai", "model": model, **setting}, TODAY)
    return not problems


def stand_in_takes(model, **setting):
    try:
        real.check({"prompt": "a calm lake", "model": model, **setting}, today=TODAY)
    except real.Refusal:
        return False
    return True


def test_both_know_the_same_models():
    assert catalogue_names() == stand_in_models()


def test_both_know_the_same_chat_models():
    """The chat models that write prompts (describe:): the catalogue prices what the stand-in answers."""
    text = {name for name, model in CATALOG.models.items() if model.kind == "text" and model.provider == "openai"}
    assert text == set(real.TEXT_MODELS)
    for name in text:
        assert {"text_input", "text_output"} <= set(CATALOG.lookup(name).rates)


@pytest.mark.parametrize("name", stand_in_models())
def test_the_same_status_and_shutdown_on_the_test_clock(name):
    model, answers = CATALOG.lookup(name), real.MODELS[name]
    state, _ = model.status(TODAY)
    assert (state == "retired") == (answers.status(TODAY) == "retired"), (state, answers.status(TODAY))
    assert model.shutdown == answers.shutdown
    if answers.released is not None:
        assert model.released in (None, answers.released)


def current_models():
    return real.current_models(TODAY)


@pytest.mark.parametrize("name", current_models())
@pytest.mark.parametrize(
    "setting, values",
    [
        ("quality", QUALITIES),
        ("size", SIZES),
        ("background", BACKGROUNDS),
        ("output_format", OUTPUT_FORMATS),
        ("complexity", COMPLEXITIES),
    ],
)
def test_a_setting_the_catalogue_takes_the_stand_in_takes_and_the_other_way_round(name, setting, values):
    differ = {
        value: {
            "catalogue": catalogue_takes(name, **{setting: value}),
            "stand-in": stand_in_takes(name, **{setting: value}),
        }
        for value in values
    }
    differ = {value: verdict for value, verdict in differ.items() if verdict["catalogue"] != verdict["stand-in"]}
    assert not differ, f"{name}: {setting} judged differently: {differ}"


@pytest.mark.parametrize("name", current_models())
def test_a_transparent_background_needs_png_or_webp_for_both(name):
    for output_format in real.OUTPUT_FORMATS:
        setting = {"background": "transparent", "output_format": output_format}
        assert catalogue_takes(name, **setting) == stand_in_takes(name, **setting), (name, setting)
