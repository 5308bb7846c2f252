"""Fault classification: the API's own error answers (through the real openai client against the
stand-in) and the rules for the answers the real API sends today."""

import pytest

from image_batch.default_plugins.openai_images import OpenAIImagesProvider
from image_batch.images.faults import FATAL, RETRY, ROW, classify_api_error, retry_after_seconds
from tests.support.fake_openai import FakeOpenAI

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
        provider.decode(raw, request)
    except Exception as exc:
        return provider.classify(exc, request)
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
        (503, "server_is_overloaded", None, RETRY, []),
    ],
)
def test_api_errors_as_the_api_sends_them(status, code, param, disposition, words):
    fault = classify_api_error(status, code, param, "the message", {}, {**REQUEST, "quality": "xhigh"})
    assert fault.disposition == disposition, fault.reason
    for word in words:
        assert word in fault.reason
    assert fault.code == code or fault.code in (None, "")


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
