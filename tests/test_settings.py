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
    env = {"AI_API_KEY": "sk-x", "S3_BUCKET_NAME": "b", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    settings = resolve(config(provider="auto", sync={"prefix": "run1"}), environ=env)
    assert settings.provider == "openai"
    assert settings.destination.as_dict() == {
        "kind": "s3",
        "location": "b",
        "prefix": "run1/",
        "endpoint_url": "http://127.0.0.1:1",
    }
    assert "sk-x" not in repr(settings)


def test_openai_api_key_is_accepted_too():
    assert resolve(config(provider="auto"), environ={"OPENAI_API_KEY": "sk-y"}).provider == "openai"


def test_bucket_without_key_refuses_placeholders():
    with pytest.raises(UserError, match="refusing to generate offline placeholders"):
        resolve(config(provider="auto"), environ={"S3_BUCKET_NAME": "b", "AI_API_KEY": "  "})


def test_openai_without_key():
    with pytest.raises(UserError, match="no API key"):
        resolve(config(provider="openai"), environ={})


def test_explicit_offline_with_bucket_is_allowed():
    settings = resolve(config(provider="offline"), environ={"S3_BUCKET_NAME": "b"})
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
    with pytest.raises(UserError, match="config mode: 'fast' is not one of"):
        load_settings({"input_csv": "s.csv", "mode": "fast"})


def test_an_old_config_with_a_prices_section_still_loads():
    settings = load_settings({"input_csv": "s.csv", "prices": {"batch_discount": 0.5, "models": {}}})
    assert settings.legacy_prices


def test_settings_can_be_pickled_for_the_image_worker():
    import pickle

    settings = load_settings({"input_csv": "s.csv"})
    assert pickle.loads(pickle.dumps(settings)) == settings
