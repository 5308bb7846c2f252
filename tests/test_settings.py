import re

import pytest

from image_batch.common.errors import UserError
from image_batch.common.settings import load_settings, resolve
from tests.conftest import settings_for


def config(**changes):
    return settings_for(**changes)


def test_auto_without_key_is_offline_to_local_folder():
    settings = resolve(config(provider="auto"), environ={})
    assert settings.provider == "offline"
    assert settings.destination.kind == "local" and settings.destination.location == "results/bucket"


def test_auto_with_key_is_openai_and_bucket_from_env():
    env = {"AI_API_KEY": "sk-x", "S3_BUCKET_NAME": "bkt", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    settings = resolve(config(provider="auto", sync={"prefix": "run1"}), environ=env)
    assert settings.provider == "openai"
    assert settings.destination.as_dict() == {
        "kind": "s3",
        "location": "bkt",
        "prefix": "run1/",
        "endpoint_url": "http://127.0.0.1:1",
    }
    assert "sk-x" not in repr(settings)


def test_openai_api_key_is_accepted_too():
    assert resolve(config(provider="auto"), environ={"OPENAI_API_KEY": "sk-y"}).provider == "openai"


def test_bucket_without_key_refuses_placeholders():
    with pytest.raises(UserError, match="refusing to generate offline placeholders"):
        resolve(config(provider="auto"), environ={"S3_BUCKET_NAME": "bkt", "AI_API_KEY": "  "})


def test_openai_without_key_plans_and_a_real_run_is_told_what_to_set():
    choices = resolve(config(provider="openai"), environ={})
    assert choices.provider == "openai" and "set AI_API_KEY" in choices.missing_key
    assert resolve(config(provider="openai"), environ={"AI_API_KEY": "sk-x"}).missing_key is None


def test_explicit_offline_with_bucket_is_allowed():
    settings = resolve(config(provider="offline"), environ={"S3_BUCKET_NAME": "bkt"})
    assert settings.provider == "offline" and settings.destination.kind == "s3"


def test_prefix_is_cleaned_and_checked():
    assert resolve(config(provider="offline", sync={"prefix": "/a/b"}), environ={}).destination.prefix == "a/b/"
    with pytest.raises(UserError, match="not allowed"):
        resolve(config(provider="offline", sync={"prefix": "../up"}), environ={})


def test_defaults_come_from_the_schema_and_land_in_typed_settings():
    settings = load_settings({"input_csv": "s.csv"})
    assert settings.retry.max_attempts == 8 and settings.retry.same_error_stop == 3
    assert settings.sync.delete_removed is False and settings.sync.concurrency == 16
    assert settings.section("openai")["model"] == "gpt-image-2.5-sunburst"
    # request fields are not defaulted (null: not sent): a default would change stored answers' keys
    assert settings.section("openai")["quality"] is None and settings.mode == "live"
    assert settings.input_sheet is None and settings.csv_delimiter == "auto"


def test_a_bad_setting_is_one_clear_error():
    with pytest.raises(UserError, match="config retry.max_attempts: 0 is less than the minimum of 1"):
        load_settings({"input_csv": "s.csv", "retry": {"max_attempts": 0}})
    with pytest.raises(UserError, match="config mode: 'fast' is not a value it takes .*use one of: live, batch"):
        load_settings({"input_csv": "s.csv", "mode": "fast"})


def refusal(config, command_line=None):
    """The one line the settings check gives for ``config`` (merged into a minimal one)."""
    with pytest.raises(UserError) as caught:
        load_settings({"input_csv": "s.csv", **config}, command_line)
    header, *lines = str(caught.value).splitlines()
    assert header == "the configuration is not valid:" and len(lines) == 1, str(caught.value)
    return lines[0].strip()


# Every field sent to the API is checked before any call, as the API takes it today (openai-python's
# types: image_generate_params, batch_create_params): the values that were sent as given.
@pytest.mark.parametrize(
    "section, given, expected",
    [
        ("openai", {"moderation": "strict"}, "config openai.moderation: 'strict' is not a value it takes .*low, auto"),
        ("openai", {"output_compression": 150}, "config openai.output_compression: 150 is greater than .*0 to 100"),
        ("openai", {"output_compression": -1}, "config openai.output_compression: -1 is less than .*0 to 100"),
        ("openai", {"output_compression": "high"}, "config openai.output_compression: 'high' is not of type"),
        ("batch", {"completion_window": "48h"}, "config batch.completion_window: '48h' is not a value .*: 24h"),
        ("openai", {"size": "big"}, "config openai.size: 'big' is not of the right form .*WIDTHxHEIGHT"),
        ("openai", {"size": "1024X1024"}, "config openai.size: '1024X1024' is not of the right form"),
        ("openai", {"background": "clear"}, "config openai.background: 'clear' .*transparent, opaque, auto"),
        ("openai", {"complexity": "extreme"}, "config openai.complexity: 'extreme' .*low, medium, high"),
        ("openai", {"output_format": "gif"}, "config openai.output_format: 'gif' .*png, jpeg, webp"),
        ("openai", {"quality": ""}, "config openai.quality: '' should be non-empty"),
        ("openai", {"timeout": 0}, "config openai.timeout: 0 is less than or equal"),
        ("openai", {"extra_body": []}, "config openai.extra_body: \\[\\] is not of type"),
    ],
)
def test_every_field_sent_to_the_api_is_checked(section, given, expected):
    line = refusal({section: given})
    assert re.match(expected, line), line
    assert "(in config/config.yaml)" in line


def test_compression_only_with_jpeg_or_webp():
    for fmt in (None, "png"):
        line = refusal({"openai": {"output_compression": 80, "output_format": fmt}})
        assert line.startswith("config openai.output_compression: the API takes it only with output_format jpeg")
        assert "set openai.output_format to jpeg or webp, or openai.output_compression to null" in line
    for fmt in ("jpeg", "webp"):
        settings = load_settings({"input_csv": "s.csv", "openai": {"output_compression": 80, "output_format": fmt}})
        assert settings.section("openai")["output_compression"] == 80
    assert load_settings({"input_csv": "s.csv", "openai": {"moderation": "low", "size": "auto"}})


def test_extra_body_cannot_override_what_the_workflow_sets_and_checks():
    line = refusal({"openai": {"quality": "high", "extra_body": {"quality": "ultra", "n": 4}}})
    assert line.startswith("config openai.extra_body: sets n, quality, which the workflow sets itself")
    assert "remove them from extra_body; set openai.quality instead" in line
    # fields of an OpenAI-compatible endpoint's own are what extra_body is for
    assert load_settings({"input_csv": "s.csv", "openai": {"extra_body": {"seed": 7, "safety_identifier": "u1"}}})


def test_a_message_says_where_the_setting_came_from():
    given = {"openai": {"moderation": "strict"}}
    assert "(given on the command line)" in refusal(given, command_line=given)
    assert "(given on the command line)" in refusal(given, command_line={"openai": "{moderation: strict}"})
    assert "(in config/config.yaml)" in refusal(given, command_line={"mode": "live"})
    with pytest.raises(UserError, match=r"\(in my/config.yaml\)"):
        load_settings({"input_csv": "s.csv", **given}, {}, "my/config.yaml")


def test_an_unknown_key_is_refused_with_a_guess():
    line = refusal({"openai": {"qualty": "high"}})
    assert line.startswith(
        "config openai.qualty: unknown key 'qualty' (in config/config.yaml); did you mean 'quality'?"
    )
    assert "did you mean 'bucket'?" in refusal({"sync": {"bukket": "b"}})


def test_an_old_config_with_a_prices_section_still_loads():
    settings = load_settings({"input_csv": "s.csv", "prices": {"batch_discount": 0.5, "models": {}}})
    assert settings.legacy_prices


def test_settings_can_be_pickled_for_the_image_worker():
    import pickle

    settings = load_settings({"input_csv": "s.csv"})
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_an_unknown_top_level_key_is_refused_with_a_guess():
    line = refusal({"modle": "x"}, command_line={"modle": "x"})
    assert line.startswith(
        "config modle: unknown key 'modle' (given on the command line); did you mean 'mode' or 'openai.model'?"
    )
    assert "did you mean 'openai'?" in refusal({"opnai": {"quality": "high"}})
    assert "did you mean 'openai.quality'?" in refusal({"qualty": "high"})
    assert "did you mean 'size'?" in refusal({"offline": {"sise": "8x8"}})


def test_a_provider_plugins_section_and_old_keys_are_taken():
    from image_batch import plugins

    # a plugin's provider takes its settings from the section named after it
    class Sketch:
        name = "sketch"

    found = plugins.providers()
    found["sketch"] = Sketch
    try:
        assert load_settings({"input_csv": "s.csv", "sketch": {"size": "8x8"}}).section("sketch") == {"size": "8x8"}
    finally:
        del found["sketch"]
    # the first version's config file had openai.max_retries (now retry.max_attempts): still loads
    assert load_settings({"input_csv": "s.csv", "openai": {"max_retries": 2, "timeout": 300}})
