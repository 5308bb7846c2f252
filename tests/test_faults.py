"""Fault classification: the API's own error answers (through the real openai client against the
stand-in) and the rules for the answers the real API sends today."""

import pytest

from image_batch.default_plugins.openai_images import OpenAIImagesProvider
from image_batch.images.faults import FATAL, RETRY, ROW, classify_api_error, classify_local, retry_after_seconds
from image_batch.images.generate import FaultError, _decode, obtain
from tests.conftest import settings_for
from tests.support.fake_openai import MORE_TRANSIENT, PERMANENT, TRANSIENT, FakeOpenAI

KEY = "sk-unit-test-key-123456"
REQUEST = {
    "provider": "openai",
    "endpoint": "images/generations",
    "model": "gpt-image-2.5-sunburst",
    "size": "1024x1024",
    "output_format": "png",
}


@pytest.fixture
def api(monkeypatch):
    with FakeOpenAI(api_key=KEY) as server:
        monkeypatch.setenv("AI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def fault_for(api, behavior, request=REQUEST):
    api.clear_behaviors()
    api.set_behavior("probe", behavior)
    provider = OpenAIImagesProvider({"timeout": 5})
    request = {**request, "base_url": api.base_url, "prompt": "probe"}
    try:
        raw = provider.fetch(request)
        _decode(provider, raw, request)  # the answer as an image job decodes and checks it
    except Exception as exc:
        return provider.classify(exc, request) or classify_local(exc)
    return None


@pytest.mark.parametrize(
    "behavior, disposition",
    [
        ("rate_limit", RETRY),
        ("server_error", RETRY),
        ("overloaded", RETRY),
        ("reset", RETRY),
        ("quota", FATAL),
        ("billing", FATAL),
        ("moderation", ROW),
    ],
)
def test_classification(api, behavior, disposition):
    fault = fault_for(api, behavior)
    assert fault is not None and fault.disposition == disposition, fault


@pytest.mark.parametrize("behavior", TRANSIENT + MORE_TRANSIENT)
def test_every_fault_the_stand_in_calls_transient_is_retried(api, behavior):
    """What the stand-in sends as a passing fault (a 429, a 5xx, a cut body, broken base64, ...),
    through the real openai client, is one the workflow retries."""
    fault = fault_for(api, behavior)
    assert fault is not None and fault.disposition == RETRY, fault


@pytest.mark.parametrize("behavior", sorted(PERMANENT))
def test_no_fault_the_stand_in_calls_permanent_is_retried(api, behavior):
    fault = fault_for(api, behavior)
    assert fault is not None and fault.disposition in (FATAL, ROW), fault


def test_rate_limit_honours_retry_after_ms(api):
    assert fault_for(api, "rate_limit").retry_after == pytest.approx(0.05)


def test_billing_and_moderation_messages_say_what_to_do(api):
    assert "billing" in fault_for(api, "quota").reason
    assert "billing" in fault_for(api, "billing").reason
    assert "moderation_blocked" in fault_for(api, "moderation").reason


def test_wrong_key_is_fatal_and_an_unknown_model_too(api, monkeypatch):
    monkeypatch.setenv("AI_API_KEY", "sk-wrong-key-000000")
    fault = fault_for(api, "ok")
    assert fault.disposition == FATAL and "AI_API_KEY" in fault.reason
    assert "sk-wrong-key-000000" not in fault.reason
    monkeypatch.setenv("AI_API_KEY", KEY)
    fault = fault_for(api, "ok", {**REQUEST, "model": "dall-e-9"})
    assert fault.disposition == FATAL and "openai.model" in fault.reason


@pytest.mark.parametrize(
    "status, code, param, disposition, words",
    [
        # a retired model, as the API answers it today: 400 invalid_value on param model
        (400, "invalid_value", "model", FATAL, ["setting model", "current model"]),
        (404, "model_not_found", None, FATAL, ["openai.model"]),
        # an exhausted billing limit is a 400, not a 429: it stops the run all the same
        (400, "billing_hard_limit_reached", None, FATAL, ["billing"]),
        (429, "insufficient_quota", None, FATAL, ["billing"]),
        (400, "invalid_value", "size", FATAL, ["openai.size", "config/models.yaml"]),
        (400, "unknown_parameter", "complexity", FATAL, ["openai.complexity"]),
        (400, "invalid_value", "quality", FATAL, ["openai.quality"]),
        (400, "moderation_blocked", None, ROW, ["safety system"]),
        (400, "invalid_value", "prompt", ROW, ["refused the request"]),
        (400, None, None, ROW, ["refused the request"]),
        (401, "invalid_api_key", None, FATAL, ["AI_API_KEY"]),
        (403, "unsupported_country_region_territory", None, FATAL, ["access denied"]),
        (503, "server_is_overloaded", None, RETRY, []),
    ],
)
def test_api_errors_as_the_api_sends_them(status, code, param, disposition, words):
    fault = classify_api_error(status, code, param, "the message", {}, {**REQUEST, "quality": "xhigh"})
    assert fault.disposition == disposition, fault.reason
    for word in words:
        assert word in fault.reason
    assert fault.code == (code or "")  # the API's own code, kept (the same-refusal safety net counts it)


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    "value", ["soon", "a moment", "1s", "Wed, 99 Foo", "nan", "inf", "-", "Sat, 32 Dec 2026 25:61:00"]
)
def test_unreadable_retry_after_leaves_it_to_backoff(value):
    assert retry_after_seconds({"retry-after": value}) is None
    assert retry_after_seconds({"retry-after-ms": value}) is None
    assert classify_api_error(429, "rate_limit_exceeded", None, "slow", {"retry-after": value}).retry_after is None


def test_not_an_exception_we_know_is_not_swallowed():
    assert OpenAIImagesProvider({}).classify(KeyError("bug"), REQUEST) is None


# -- what obtain does with each kind of fault (through the real client, against the stand-in) ------


def config_for(tmp_path, **retry):
    return settings_for(
        openai={"timeout": 5},
        response_store=str(tmp_path / "store"),
        retry={"max_attempts": 4, "max_seconds": 30, "initial_wait": 0.01, "max_wait": 0.05, **retry},
    )


def request_for(api, prompt):
    return {**REQUEST, "base_url": api.base_url, "quality": "medium", "prompt": prompt}


def test_obtain_retries_transient_faults_then_stores_once(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.fail_times("fox", "server_error", 2)
    request = request_for(api, "a fox")
    logged = []
    outcome = obtain(request, config_for(tmp_path), logged.append)
    assert outcome.png.startswith(b"\x89PNG") and len(api.calls) == 3 and outcome.how == "paid"
    # a second obtain is served by the store: no call
    again = obtain(request, config_for(tmp_path), logged.append)
    assert len(api.calls) == 3 and again.how == "store"
    assert any("served from the response store" in line for line in logged)


def test_unreadable_retry_after_is_retried_with_backoff(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.fail_times("fox", "bad_retry_after", 2)
    outcome = obtain(request_for(api, "a fox"), config_for(tmp_path), lambda m: None)
    assert outcome.png.startswith(b"\x89PNG") and len(api.calls) == 3


def test_obtain_gives_up_after_max_attempts(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "server_error")
    with pytest.raises(FaultError) as info:
        obtain(request_for(api, "a fox"), config_for(tmp_path, max_attempts=3), lambda m: None)
    assert info.value.fault.disposition == RETRY and info.value.attempts == 3 and len(api.calls) == 3


def test_unusable_answers_are_paid_for_at_most_max_unusable_times(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "not_image")
    with pytest.raises(FaultError) as info:
        obtain(request_for(api, "a fox"), config_for(tmp_path, max_unusable=2), lambda m: None)
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
    outcome = obtain(request_for(api, "a fox"), config_for(tmp_path), lambda m: None)
    assert outcome.png.startswith(b"\x89PNG") and failures
    generations = [c for c in api.calls if c["path"].endswith("/images/generations")]
    assert len(generations) == 1  # paid once; the download was what got retried
    entry = next((tmp_path / "store").glob("??/*.json")).read_text()
    assert "attachment_b64" in entry  # the image is kept with its answer now


def test_obtain_does_not_retry_a_refused_row(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.set_behavior("fox", "moderation")
    with pytest.raises(FaultError) as info:
        obtain(request_for(api, "a fox"), config_for(tmp_path), lambda m: None)
    assert info.value.fault.disposition == ROW and len(api.calls) == 1
