import pytest

from image_batch.common.errors import UserError
from image_batch.common.settings import resolve


def test_auto_without_key_is_offline_to_local_folder():
    settings = resolve({"provider": "auto"}, environ={})
    assert settings.provider == "offline"
    assert settings.destination.kind == "local" and settings.destination.location == "results/bucket"


def test_auto_with_key_is_openai_and_bucket_from_env():
    env = {"AI_API_KEY": "sk-x", "S3_BUCKET_NAME": "b", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    settings = resolve({"provider": "auto", "sync": {"prefix": "run1"}}, environ=env)
    assert settings.provider == "openai"
    assert settings.destination.as_dict() == {
        "kind": "s3",
        "location": "b",
        "prefix": "run1/",
        "endpoint_url": "http://127.0.0.1:1",
    }
    assert "sk-x" not in repr(settings)


def test_openai_api_key_is_accepted_too():
    assert resolve({"provider": "auto"}, environ={"OPENAI_API_KEY": "sk-y"}).provider == "openai"


def test_bucket_without_key_refuses_placeholders():
    with pytest.raises(UserError, match="refusing to generate offline placeholders"):
        resolve({"provider": "auto"}, environ={"S3_BUCKET_NAME": "b", "AI_API_KEY": "  "})


def test_openai_without_key():
    with pytest.raises(UserError, match="no API key"):
        resolve({"provider": "openai"}, environ={})


def test_explicit_offline_with_bucket_is_allowed():
    settings = resolve({"provider": "offline"}, environ={"S3_BUCKET_NAME": "b"})
    assert settings.provider == "offline" and settings.destination.kind == "s3"


def test_prefix_is_cleaned_and_checked():
    assert resolve({"provider": "offline", "sync": {"prefix": "/a/b"}}, environ={}).destination.prefix == "a/b/"
    with pytest.raises(UserError, match="not allowed"):
        resolve({"provider": "offline", "sync": {"prefix": "../up"}}, environ={})
