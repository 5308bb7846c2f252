"""The fake Images API answers the real openai client the way the real API does."""

import base64
import io
import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.support.fake_openai import GOOD, TRANSIENT, Behavior, FakeOpenAI, expected_color

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def srv():
    with FakeOpenAI(api_key="sk-test") as server:
        yield server


@pytest.fixture
def client(srv):
    return OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=0, timeout=10)


def generate(client, prompt="a red fox", **kwargs):
    params = {"model": "gpt-image-2", "prompt": prompt, "size": "1024x1024", "output_format": "png", **kwargs}
    return client.images.generate(**params)


def decode(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


def test_generate_returns_png_of_prompt_colour(srv, client):
    response = generate(client)
    image = decode(response.data[0].b64_json)
    assert image.format == "PNG" and image.size == (64, 64)
    assert image.convert("RGB").getpixel((10, 10)) == expected_color("a red fox")
    assert response.size == "1024x1024" and response.output_format == "png" and response.quality == "medium"
    # gpt-image-2, medium, 1024x1024: 1756 image tokens (research §4); "a red fox": ceil(9 / 4) = 3 text tokens.
    assert response.usage.input_tokens == 3 and response.usage.output_tokens == 1756
    assert response.usage.total_tokens == 1759
    [call] = srv.calls_for("a red fox")
    assert call["status"] == 200 and call["path"] == "/v1/images/generations"
    assert call["headers"]["authorization"] == "Bearer sk-test"
    assert call["body"]["model"] == "gpt-image-2" and "response_format" not in call["body"]
    assert srv.paid_calls == [call]


def test_raw_response_exposes_request_id_and_rate_limit_headers(srv, client):
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="a blue whale")
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-request-id"] == srv.calls[0]["request_id"]
    assert raw.headers["x-ratelimit-reset-requests"] == "1s"
    assert decode(raw.parse().data[0].b64_json).format == "PNG"


def test_keep_alive_connection_is_reused(srv, client):
    for index in range(3):
        generate(client, prompt=f"prompt {index}")
    assert len(srv.paid_calls) == 3
    assert len({call["peer"] for call in srv.calls}) == 1


def test_concurrent_fail_times_is_exact(srv, client):
    srv.fail_times("busy", "server_error", 3)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: _status(client, f"busy {i}"), range(12)))
    assert sorted(outcomes) == [200] * 9 + [500] * 3
    assert len(srv.calls) == 12 and len(srv.paid_calls) == 9


def _status(client, prompt):
    try:
        generate(client, prompt=prompt)
        return 200
    except openai.APIStatusError as error:
        return error.status_code


def test_response_format_is_rejected_for_gpt_image(srv, client):
    with pytest.raises(openai.BadRequestError) as caught:
        generate(client, response_format="b64_json")
    assert caught.value.code == "unknown_parameter" and caught.value.param == "response_format"
    assert "Unknown parameter: 'response_format'." in caught.value.message
    assert srv.paid_calls == []


def test_unknown_model_and_missing_prompt(client):
    with pytest.raises(openai.NotFoundError) as caught:
        generate(client, model="gpt-image-9")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        generate(client, prompt="")


def test_wrong_key_is_401(srv):
    bad = OpenAI(api_key="sk-wrong", base_url=srv.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        generate(bad)
    assert caught.value.code == "invalid_api_key"
    assert srv.calls[0]["headers"]["authorization"] == "Bearer sk-wrong"


def test_moderation(srv, client):
    srv.set_behavior("forbidden", "moderation")
    with pytest.raises(openai.BadRequestError) as caught:
        generate(client, prompt="something forbidden")
    assert caught.value.code == "moderation_blocked"
    assert caught.value.body["type"] == "image_generation_user_error"
    generate(client, prompt="something fine")  # other prompts unaffected


@pytest.mark.parametrize(
    "kind, error, code",
    [
        ("rate_limit", openai.RateLimitError, "rate_limit_exceeded"),
        ("quota", openai.RateLimitError, "insufficient_quota"),
        ("server_error", openai.InternalServerError, None),
        ("overloaded", openai.InternalServerError, "server_is_overloaded"),
    ],
)
def test_status_faults(srv, client, kind, error, code):
    srv.default_behavior = kind
    with pytest.raises(error) as caught:
        generate(client)
    assert caught.value.code == code
    if kind == "rate_limit":
        assert caught.value.response.headers["retry-after-ms"] == "50"


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_connection_faults(srv, client, kind):
    srv.set_behavior("fox", kind)
    with pytest.raises(openai.APIConnectionError):
        generate(client)
    assert srv.paid_calls == []
    generate(client, prompt="a cat")  # the client recovers on a fresh connection


def test_fail_times_then_ok_with_client_retries(srv):
    srv.fail_times("fox", "rate_limit", 2)
    retrying = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=2)
    response = generate(retrying)  # retry-after-ms: 50 keeps this fast
    assert decode(response.data[0].b64_json).format == "PNG"
    assert [call["status"] for call in srv.calls] == [429, 429, 200]


@pytest.mark.parametrize("kind, fmt", [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_wrong_format_answers(client, srv, kind, fmt):
    srv.default_behavior = kind
    response = generate(client)
    assert response.output_format == kind and decode(response.data[0].b64_json).format == fmt


def test_broken_payloads(srv, client):
    srv.set_behavior("junk", "not_image")
    srv.set_behavior("garbled", "bad_base64")
    with pytest.raises(Exception):  # noqa: B017 - Pillow raises its own error types
        decode(generate(client, prompt="junk").data[0].b64_json)
    assert generate(client, prompt="garbled").data[0].b64_json == "!!!not-base64"
    assert len(srv.paid_calls) == 2  # the real API bills these too


def test_url_and_slow(srv, client):
    srv.set_behavior("link", "url")
    srv.set_behavior("sloth", Behavior("slow", delay=0.2))
    item = generate(client, prompt="link me").data[0]
    assert item.b64_json is None
    with urllib.request.urlopen(item.url, timeout=5) as answer:
        assert Image.open(io.BytesIO(answer.read())).getpixel((0, 0)) == expected_color("link me")
    with pytest.raises(openai.APITimeoutError):
        generate(client.with_options(timeout=0.05), prompt="sloth")
    srv.reset()
    assert srv.calls == []


def test_main_prints_ready_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "READY" and line[1].startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            line[1] + "/images/generations",
            data=json.dumps({"model": "gpt-image-2", "prompt": "hi"}).encode(),
            headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["usage"]["input_tokens"] == 1
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()


# -- more fault kinds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, error, status, code",
    [
        ("timeout_408", openai.APIStatusError, 408, "request_timeout"),
        ("conflict_409", openai.ConflictError, 409, "conflict"),
        ("slow_down", openai.RateLimitError, 429, "slow_down"),
        ("bad_gateway", openai.InternalServerError, 502, None),
        ("content_policy", openai.BadRequestError, 400, "content_policy_violation"),
        ("billing", openai.BadRequestError, 400, "billing_hard_limit_reached"),
        ("forbidden", openai.PermissionDeniedError, 403, None),
        ("model_not_found", openai.NotFoundError, 404, "model_not_found"),
    ],
)
def test_more_status_faults(srv, client, kind, error, status, code):
    srv.set_behavior("fox", kind)
    with pytest.raises(error) as caught:
        generate(client)
    assert caught.value.status_code == status and caught.value.code == code
    headers = caught.value.response.headers
    if kind == "bad_gateway":  # what a proxy in front would say: HTML, not OpenAI's JSON
        assert headers["content-type"] == "text/html" and "502 Bad Gateway" in caught.value.response.text
    if kind == "slow_down":
        assert headers["retry-after-ms"] == "50"
    if kind == "model_not_found":
        assert "`gpt-image-2`" in caught.value.message
    [call] = srv.calls
    assert call["behavior"] == kind and call["rule"] == "override" and not call["paid"]


@pytest.mark.parametrize("kind", ["timeout_408", "conflict_409", "slow_down", "bad_gateway"])
def test_new_transient_kinds_are_retried_by_the_client(srv, kind):
    srv.fail_times("fox", kind, 1)
    retrying = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=1, timeout=10)
    assert decode(generate(retrying).data[0].b64_json).format == "PNG"
    assert [call["behavior"] for call in srv.calls] == [kind, "ok"]
    assert [call["rule"] for call in srv.calls] == ["fail_times", "default"]


def test_every_transient_kind_is_a_behavior():
    assert set(TRANSIENT) <= {
        "rate_limit",
        "server_error",
        "overloaded",
        "truncated",
        "reset",
        "bad_base64",
        "not_image",
        "timeout_408",
        "conflict_409",
        "slow_down",
        "bad_gateway",
    }
    assert len(TRANSIENT) == 11 and not set(TRANSIENT) & GOOD
    for kind in TRANSIENT:
        Behavior(kind)


def test_good_paid_calls_and_stats(srv, client):
    srv.set_behavior("junk", "not_image")
    srv.set_behavior("garbled", "bad_base64")
    srv.set_behavior("cut", "truncated")
    srv.set_behavior("link", "url")
    srv.set_behavior("late", Behavior("slow", delay=0.01))
    srv.set_behavior("busy", "rate_limit")
    for prompt in ("fine", "junk", "garbled", "link", "late", "jpeg please"):
        generate(client, prompt=prompt)
    for prompt in ("cut", "busy"):
        with pytest.raises(openai.APIError):
            generate(client, prompt=prompt)
    good = [call["body"]["prompt"] for call in srv.good_paid_calls]
    assert good == ["fine", "link", "late", "jpeg please"]
    assert len(srv.paid_calls) == 6  # the broken payloads are billed too, the truncated answer is not
    stats = srv.stats()
    assert stats["calls"] == 8 and stats["ok"] == 7 and stats["status_429"] == 1 and stats["limited"] == 0
    assert stats["paid"] == 6 and stats["good_paid"] == 4 and stats["faulted"] == 4
    assert stats["by_behavior"]["ok"] == 2 and stats["by_status"][200] == 7


# -- random fault mix --------------------------------------------------------------------------------------------


def _campaign(srv, client, prompts):
    """Send ``prompts`` one after the other; the faults the client saw, as {prompt: True/False}."""
    seen = {}
    for prompt in prompts:
        try:
            data = generate(client, prompt=prompt).data[0]
            image = decode(data.b64_json)
            seen[prompt] = image.convert("RGB").getpixel((0, 0)) != expected_color(prompt)
        except (openai.APIError, ValueError, OSError):  # status / connection errors, bad base64, not an image
            seen[prompt] = True
    return seen


def _faulted(srv):
    return {call["body"]["prompt"]: call["behavior"] for call in srv.calls if call["behavior"] != "ok"}


def test_fault_mix_rate_kinds_and_determinism(srv, client):
    prompts = [f"campaign image {index}" for index in range(200)]
    srv.set_fault_mix(rate=0.3, seed=7)
    seen = _campaign(srv, client, prompts)
    faulted = _faulted(srv)
    assert len(srv.calls) == 200  # max_retries=0: one request per prompt
    assert 0.15 * 200 <= len(faulted) <= 0.45 * 200
    assert {prompt for prompt, bad in seen.items() if bad} == set(faulted)  # the client noticed every fault
    assert set(faulted.values()) <= set(TRANSIENT) and len(set(faulted.values())) >= 5
    assert all(call["rule"] == ("mix" if call["behavior"] != "ok" else "default") for call in srv.calls)
    assert srv.stats()["faulted"] == len(faulted) and srv.stats()["good_paid"] == 200 - len(faulted)

    srv.reset()
    srv.set_fault_mix(rate=0.3, seed=7)  # same seed, same sequential requests: same faults
    _campaign(srv, client, prompts)
    assert _faulted(srv) == faulted

    srv.reset()
    srv.set_fault_mix(rate=0.3, seed=8)
    _campaign(srv, client, prompts)
    assert set(_faulted(srv)) != set(faulted)


def test_fault_mix_kinds_exclude_and_explicit_rules(srv, client):
    srv.set_fault_mix(rate=1.0, kinds=["server_error", "overloaded"], exclude=("safe",))
    srv.set_behavior("pinned", "jpeg")
    srv.fail_times("once", "moderation", 1)
    outcomes = {prompt: _status(client, prompt) for prompt in ("safe 1", "a safe 2", "pinned", "once", "doomed")}
    assert outcomes["safe 1"] == outcomes["a safe 2"] == outcomes["pinned"] == 200
    assert outcomes["once"] == 400 and outcomes["doomed"] in (500, 503)
    rules = {call["body"]["prompt"]: call["rule"] for call in srv.calls}
    assert rules == {
        "safe 1": "default",
        "a safe 2": "default",
        "pinned": "override",
        "once": "fail_times",
        "doomed": "mix",
    }
    assert _status(client, "once") in (500, 503)  # fail_times used up: the mix applies again

    srv.clear_behaviors()  # removes the mix too
    assert _status(client, "doomed") == 200 and _status(client, "pinned") == 200


def test_fault_mix_rejects_bad_arguments(srv):
    with pytest.raises(ValueError):
        srv.set_fault_mix(rate=1.5)
    with pytest.raises(ValueError):
        srv.set_fault_mix(kinds=["no_such_kind"])
    with pytest.raises(ValueError):
        srv.set_fault_mix(kinds=[])


# -- rate limiter ------------------------------------------------------------------------------------------------


def test_rate_limiter_burst_gets_429_with_retry_after():
    with FakeOpenAI(rate_limit_per_minute=3) as server:
        client = OpenAI(api_key="sk-any", base_url=server.base_url, max_retries=0, timeout=10)
        remaining = []
        for index in range(3):
            raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt=f"burst {index}")
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        for index in range(3, 5):
            with pytest.raises(openai.RateLimitError) as caught:
                generate(client, prompt=f"burst {index}")
            assert caught.value.code == "rate_limit_exceeded"
            headers = caught.value.response.headers
            assert 0 < int(headers["retry-after-ms"]) <= 60_000
            assert headers["x-ratelimit-limit-requests"] == "3"
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert headers["x-ratelimit-reset-requests"].endswith("s")
        stats = server.stats()
        assert stats["calls"] == 5 and stats["ok"] == 3 and stats["status_429"] == 2 and stats["limited"] == 2
        assert [call["limited"] for call in server.calls] == [False] * 3 + [True] * 2
        assert server.calls[-1]["behavior"] == "rate_limit" and server.calls[-1]["rule"] == "limiter"

        server.set_rate_limit(None)  # lifted
        generate(client, prompt="after the limit")
        assert server.stats()["ok"] == 4


def test_rate_limiter_concurrent_burst_is_exact_and_errors_use_no_slots(srv, client):
    srv.set_rate_limit(4)
    srv.set_behavior("boom", "server_error")
    assert [_status(client, f"boom {index}") for index in range(3)] == [500] * 3
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: _status(client, f"burst {i}"), range(12)))
    assert sorted(outcomes) == [200] * 4 + [429] * 8
    assert srv.stats()["status_429"] == 8 and srv.stats()["limited"] == 8


def test_rate_limiter_slot_frees_after_retry_after(srv):
    srv.set_rate_limit(2, window=1.0)
    client = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=0, timeout=10)
    generate(client, prompt="one")
    generate(client, prompt="two")
    with pytest.raises(openai.RateLimitError) as caught:
        generate(client, prompt="three")
    wait_ms = int(caught.value.response.headers["retry-after-ms"])
    assert 0 < wait_ms <= 1000
    started = time.monotonic()
    retrying = client.with_options(max_retries=3)  # honours retry-after-ms
    generate(retrying, prompt="three")
    assert time.monotonic() - started < 3
    assert [call["status"] for call in srv.calls_for("three")][-1] == 200
