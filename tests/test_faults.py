"""Fault classification, with real exceptions from the real openai client against the stand-in."""

import pytest

from image_batch.images.faults import FATAL, RETRY, ROW, classify, retry_after_seconds
from image_batch.images.generate import FaultError, obtain
from image_batch.providers.openai_images import OpenAIImagesProvider
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-unit-test-key-123456"
REQUEST = {"provider": "openai", "endpoint": "images/generations", "model": "gpt-image-test", "output_format": "png"}


@pytest.fixture
def api(monkeypatch):
    with FakeOpenAI(api_key=KEY) as server:
        monkeypatch.setenv("AI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def fault_for(api, behavior):
    api.clear_behaviors()
    api.set_behavior("probe", behavior)
    provider = OpenAIImagesProvider({"timeout": 5})
    try:
        raw = provider.fetch({**REQUEST, "prompt": "probe"})
        provider.decode(raw, {**REQUEST, "prompt": "probe"})
    except Exception as exc:
        return classify(exc, "gpt-image-test")
    return None


@pytest.mark.parametrize(
    "behavior, disposition",
    [
        ("rate_limit", RETRY),
        ("server_error", RETRY),
        ("overloaded", RETRY),
        ("truncated", RETRY),
        ("reset", RETRY),
        ("bad_base64", RETRY),
        ("quota", FATAL),
        ("moderation", ROW),
    ],
)
def test_classification(api, behavior, disposition):
    fault = fault_for(api, behavior)
    assert fault is not None and fault.disposition == disposition, fault


def test_rate_limit_honours_retry_after_ms(api):
    assert fault_for(api, "rate_limit").retry_after == pytest.approx(0.05)


def test_quota_and_moderation_messages_say_what_to_do(api):
    assert "billing" in fault_for(api, "quota").reason
    assert "moderation_blocked" in fault_for(api, "moderation").reason


def test_wrong_key_is_fatal_and_model_not_found_too(api, monkeypatch):
    monkeypatch.setenv("AI_API_KEY", "sk-wrong-key-000000")
    fault = fault_for(api, "ok")
    assert fault.disposition == FATAL and "AI_API_KEY" in fault.reason
    assert "sk-wrong-key-000000" not in fault.reason
    monkeypatch.setenv("AI_API_KEY", KEY)
    provider = OpenAIImagesProvider({})
    with pytest.raises(Exception) as info:
        provider.fetch({**REQUEST, "model": "dall-e-9", "prompt": "x"})
    fault = classify(info.value, "dall-e-9")
    assert fault.disposition == FATAL and "openai.model" in fault.reason


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_seconds({}) is None


def test_not_an_exception_we_know_is_not_swallowed():
    assert classify(KeyError("bug")) is None


def config_for(tmp_path, **retry):
    return {
        "openai": {"timeout": 5},
        "response_store": str(tmp_path / "store"),
        "retry": {"max_attempts": 4, "max_seconds": 30, "initial_wait": 0.01, "max_wait": 0.05, **retry},
    }


def test_obtain_retries_transient_faults_then_stores_once(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.fail_times("fox", "server_error", 2)
    request = {**REQUEST, "prompt": "a fox"}
    logged = []
    image, png, _ = obtain(request, config_for(tmp_path), logged.append)
    assert png.startswith(b"\x89PNG") and len(api.calls) == 3
    # a second obtain is served by the store: no call
    obtain(request, config_for(tmp_path), logged.append)
    assert len(api.calls) == 3
    assert any("served from the response store" in line for line in logged)


def test_obtain_gives_up_after_max_attempts(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "server_error")
    with pytest.raises(FaultError) as info:
        obtain({**REQUEST, "prompt": "a fox"}, config_for(tmp_path, max_attempts=3), lambda m: None)
    assert info.value.fault.disposition == RETRY and info.value.attempts == 3 and len(api.calls) == 3


def test_unusable_answers_are_paid_for_at_most_max_unusable_times(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "not_image")
    with pytest.raises(FaultError) as info:
        obtain({**REQUEST, "prompt": "a fox"}, config_for(tmp_path, max_unusable=2), lambda m: None)
    assert info.value.fault.disposition == ROW and "2 unusable answers" in info.value.fault.reason
    assert len(api.calls) == 2
    assert len(list((tmp_path / "store" / "rejected").glob("*.json"))) == 2  # kept aside, not used


def test_failed_url_download_retries_the_download_not_the_paid_call(api, tmp_path, monkeypatch):
    import urllib.request

    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "url")
    real_urlopen, failures = urllib.request.urlopen, []

    def flaky_urlopen(url, timeout=None):
        if not failures:
            failures.append(url)
            raise OSError("connection reset")
        return real_urlopen(url, timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", flaky_urlopen)
    image, png, _ = obtain({**REQUEST, "prompt": "a fox"}, config_for(tmp_path), lambda m: None)
    assert png.startswith(b"\x89PNG") and failures
    generations = [c for c in api.calls if c["path"].endswith("/images/generations")]
    assert len(generations) == 1  # paid once; the download was what got retried
    entry = next((tmp_path / "store").glob("??/*.json")).read_text()
    assert "attachment_b64" in entry  # the image is kept with its answer now


def test_obtain_does_not_retry_a_refused_row(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "moderation")
    with pytest.raises(FaultError) as info:
        obtain({**REQUEST, "prompt": "a fox"}, config_for(tmp_path), lambda m: None)
    assert info.value.fault.disposition == ROW and len(api.calls) == 1
