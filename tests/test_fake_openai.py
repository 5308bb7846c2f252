"""The fake Images API answers the real openai client the way the real API does."""

import base64
import io
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.support.fake_openai import (
    BEHAVIORS,
    MORE_TRANSIENT,
    TRANSIENT,
    Behavior,
    FakeOpenAI,
    _duration,
    expected_color,
)

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
    assert image.format == "PNG" and image.size == (1024, 1024)
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


@pytest.mark.parametrize(
    "model, size, made",
    [
        ("gpt-image-2", "1536x1024", (1536, 1024)),
        ("gpt-image-2.5-sunburst", "3840x2160", (3840, 2160)),
        ("gpt-image-2.6-flare", "auto", (1024, 1024)),
        ("gpt-image-1.5", "1024x1536", (1024, 1536)),
    ],
)
@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
def test_the_image_is_the_size_the_answer_states(srv, client, model, size, made, output_format):
    response = generate(client, model=model, size=size, output_format=output_format, prompt=f"a fox {size}")
    image = decode(response.data[0].b64_json)
    assert image.size == made and response.size == f"{made[0]}x{made[1]}"
    assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[output_format]
    colour = expected_color(f"a fox {size}")
    if output_format == "jpeg":  # lossy: the corner is near the colour
        corner = image.convert("RGB").getpixel((made[0] - 1, made[1] - 1))
        assert max(abs(a - b) for a, b in zip(corner, colour, strict=True)) <= 2
    else:  # every pixel is the colour
        assert image.convert("RGB").getextrema() == tuple((c, c) for c in colour)


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


def test_a_short_window_can_state_its_limit_per_minute(srv, client):
    srv.set_rate_limit(4, window=2.0, per_minute_headers=True)  # 4 per 2 s is 120 a minute
    headers = client.images.with_raw_response.generate(model="gpt-image-2", prompt="paced").headers
    assert headers["x-ratelimit-limit-requests"] == "120" and headers["x-ratelimit-remaining-requests"] == "3"
    srv.set_rate_limit(4, window=2.0)  # as the window counts them
    headers = client.images.with_raw_response.generate(model="gpt-image-2", prompt="paced").headers
    assert headers["x-ratelimit-limit-requests"] == "4"


def test_a_429_can_ask_for_a_longer_wait(srv, client):
    srv.set_behavior("patience", Behavior("rate_limit", retry_after=2.5))
    with pytest.raises(openai.RateLimitError) as caught:
        generate(client, prompt="patience")
    headers = caught.value.response.headers
    assert headers["retry-after-ms"] == "2500" and headers["retry-after"] == "3"
    assert "Please try again in 2.5s." in caught.value.message
    [call] = srv.calls_for("patience")
    assert call["answer_headers"]["retry-after-ms"] == "2500" and call["answered"] >= call["time"]


def test_held_calls_wait_in_flight_until_released(srv, client):
    srv.hold()
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(generate, client, prompt="held")
        deadline = time.monotonic() + 10
        while srv.held() < 1:
            assert time.monotonic() < deadline, "the call never reached the stand-in"
            time.sleep(0.01)
        assert srv.calls == [] and not answer.done()  # recorded only once answered
        srv.release()
        assert answer.result(timeout=10).data[0].b64_json
    assert srv.held() == 0 and len(srv.paid_calls) == 1


# -- the real API of 2026-11-27 (sources: tests/support/SOURCES.md) ----------------------------------------------------

# Written out by hand from the research, not taken from the stand-in's table: what should answer on 2026-11-27.
TODAYS_MODELS = [
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-1.5-2025-12-16",
    "gpt-image-2",
    "gpt-image-2-2026-04-21",
    "gpt-image-2.5-sunburst",
    "gpt-image-2.5-sunburst-2026-09-08",
    "gpt-image-2.5-flare",
    "gpt-image-2.5-flare-2026-09-08",
    "gpt-image-2.6-sunburst",
    "gpt-image-2.6-flare",
    "chatgpt-image-latest",
]
GONE_1X = ["gpt-image-1-mini", "gpt-image-1.5", "gpt-image-1.5-2025-12-16", "chatgpt-image-latest"]  # 2026-12-01
SUPPORTED_TODAY = (
    "'gpt-image-1-mini', 'gpt-image-1.5', 'gpt-image-1.5-2025-12-16', 'gpt-image-2', 'gpt-image-2-2026-04-21', "
    "'gpt-image-2.5-sunburst', 'gpt-image-2.5-sunburst-2026-09-08', 'gpt-image-2.5-flare', "
    "'gpt-image-2.5-flare-2026-09-08', 'gpt-image-2.6-sunburst', 'gpt-image-2.6-flare', and 'chatgpt-image-latest'"
)


def refusal(call):
    """(status, the error object) of an APIStatusError the call raises."""
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value.status_code, caught.value.response.json()["error"]


def post(srv, body, key="sk-test"):
    """Raw POST to the generations endpoint: (status, headers, parsed JSON body)."""
    request = urllib.request.Request(
        srv.base_url + "/images/generations",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.load(error)


@pytest.mark.parametrize("model", TODAYS_MODELS)
def test_every_model_of_today_answers(client, model):
    response = generate(client, model=model)
    assert response.size == "1024x1024" and response.quality == "medium"
    assert response.usage.output_tokens == (1056 if "image-1" in model or model.startswith("chatgpt") else 1756)


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2", "dall-e-3"])
def test_retired_models_are_refused_with_the_models_of_today(srv, client, model):
    status, error = refusal(lambda: generate(client, model=model))
    assert status == 400
    assert error == {
        "message": f"Invalid value: '{model}'. Supported values are: {SUPPORTED_TODAY}.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_value",
    }
    assert srv.paid_calls == [] and srv.calls[0]["behavior"] is None


def test_unknown_model_body(client):
    status, error = refusal(lambda: generate(client, model="gpt-image-9"))
    assert status == 404
    assert error == {
        "message": "The model `gpt-image-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


def test_omitted_model_means_dall_e_2_which_is_retired(client):
    status, error = refusal(lambda: client.images.generate(prompt="no model named"))
    assert status == 400 and error["message"].startswith("Invalid value: 'dall-e-2'. Supported values are: ")


def test_the_1x_models_stop_on_2026_12_01(srv, client):
    srv.today = date(2026, 11, 30)
    for model in GONE_1X:
        generate(client, model=model)
    srv.today = date(2026, 12, 1)
    for model in GONE_1X:
        status, error = refusal(lambda model=model: generate(client, model=model))
        assert (status, error["code"], error["param"]) == (400, "invalid_value", "model")
    assert error["message"] == (
        "Invalid value: 'chatgpt-image-latest'. Supported values are: 'gpt-image-2', 'gpt-image-2-2026-04-21', "
        "'gpt-image-2.5-sunburst', 'gpt-image-2.5-sunburst-2026-09-08', 'gpt-image-2.5-flare', "
        "'gpt-image-2.5-flare-2026-09-08', 'gpt-image-2.6-sunburst', and 'gpt-image-2.6-flare'."
    )
    assert generate(client, model="gpt-image-2.6-flare").size == "1024x1024"
    assert len(srv.paid_calls) == len(GONE_1X) + 1


def test_models_before_their_release_do_not_exist():
    with FakeOpenAI(api_key="sk-test", today=date(2026, 11, 3)) as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        status, error = refusal(lambda: generate(client, model="gpt-image-2.6-sunburst"))
        assert (status, error["code"]) == (404, "model_not_found")
        generate(client, model="gpt-image-2.5-sunburst")
        server.today = date(2026, 5, 11)  # gpt-image-2 is out, 2.5 is not, DALL-E not yet shut down
        assert refusal(lambda: generate(client, model="gpt-image-2.5-flare"))[0] == 404
        generate(client, model="gpt-image-1")
        old = client.images.generate(model="dall-e-3", prompt="an old friend", size="1792x1024")
        assert old.data[0].url and old.data[0].revised_prompt == "an old friend" and old.usage is None
        server.today = date(2026, 5, 12)
        assert refusal(lambda: client.images.generate(model="dall-e-3", prompt="gone"))[0] == 400


@pytest.mark.parametrize(
    "answer, message",
    [
        ("model_not_found", "The model `gpt-image-1` does not exist or you do not have access to it."),
        (
            "deprecated",
            "The model `gpt-image-1` has been deprecated, learn more here: https://platform.openai.com/docs/deprecations",
        ),
    ],
)
def test_retired_answer_404_variants(answer, message):
    with FakeOpenAI(api_key="sk-test", retired_answer=answer) as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        status, error = refusal(lambda: generate(client, model="gpt-image-1"))
    assert status == 404
    assert error == {"message": message, "type": "invalid_request_error", "param": None, "code": "model_not_found"}


def test_models_restricts_the_account():
    with FakeOpenAI(api_key="sk-test", models=["gpt-image-2", "gpt-image-1"]) as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        generate(client, model="gpt-image-2")
        assert refusal(lambda: generate(client, model="gpt-image-2.5-sunburst"))[0] == 404
        status, error = refusal(lambda: generate(client, model="gpt-image-1"))
        assert status == 400
        assert error["message"] == "Invalid value: 'gpt-image-1'. Supported values are: 'gpt-image-2'."
        assert server.current_models == ["gpt-image-2"]


def test_constructor_refuses_what_the_real_api_does_not_have():
    with pytest.raises(ValueError, match="gpt-image-test"):
        FakeOpenAI(models=["gpt-image-test"])
    with pytest.raises(ValueError):
        FakeOpenAI(retired_answer="gone")
    with pytest.raises(ValueError):
        FakeOpenAI(usage_shape="compact")


# -- settings per model -----------------------------------------------------------------------------------------------


def bad_request(client, **kwargs):
    """The error object of a 400 for ``generate(**kwargs)``."""
    status, error = refusal(lambda: generate(client, **kwargs))
    assert status == 400 and error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    "model, quality, ok",
    [
        ("gpt-image-2", "high", True),
        ("gpt-image-2", "xhigh", False),
        ("gpt-image-2", "max", False),
        ("gpt-image-1.5", "xhigh", False),
        ("gpt-image-2.5-sunburst", "xhigh", True),
        ("gpt-image-2.5-flare-2026-09-08", "max", True),
        ("gpt-image-2.6-flare", "max", True),
        ("gpt-image-2.6-sunburst", "standard", False),
    ],
)
def test_quality_per_model(client, model, quality, ok):
    if ok:
        assert generate(client, model=model, quality=quality).quality == quality
        return
    error = bad_request(client, model=model, quality=quality)
    values = "'low', 'medium', 'high', and 'auto'" if "2.6" not in model else "'low', 'medium', 'high', 'xhigh', "
    assert error["param"] == "quality" and error["code"] == "invalid_value"
    assert error["message"].startswith(f"Invalid value: '{quality}'. Supported values are: {values}")


def test_fixed_sizes_of_the_1x_models(client):
    assert generate(client, model="gpt-image-1.5", size="1536x1024").size == "1536x1024"
    error = bad_request(client, model="gpt-image-1-mini", size="1254x836")
    assert error == {
        "message": "Invalid value: '1254x836'. Supported values are: "
        "'1024x1024', '1024x1536', '1536x1024', and 'auto'.",
        "type": "invalid_request_error",
        "param": "size",
        "code": "invalid_value",
    }
    assert bad_request(client, model="gpt-image-1.5", size="1536x864")["param"] == "size"


@pytest.mark.parametrize(
    "size, message",
    [
        ("1792x936", "Invalid size '1792x936'. Width and height must both be divisible by 16."),
        ("3840x1024", "Invalid size '3840x1024'. The aspect ratio must be between 1:3 and 3:1."),
        ("4096x2048", "Invalid size '4096x2048'. Width and height must both be at most 3840 pixels."),
        ("768x768", "Invalid size '768x768'. The total number of pixels must be between 655360 and 8294400."),
        ("3840x2176", "Invalid size '3840x2176'. The total number of pixels must be between 655360 and 8294400."),
        ("big", "Invalid size 'big'. Expected 'auto' or 'WIDTHxHEIGHT', for example '1536x864'."),
    ],
)
def test_flexible_sizes_refused(client, size, message):
    for model in ("gpt-image-2", "gpt-image-2.5-sunburst", "gpt-image-2.6-flare"):
        error = bad_request(client, model=model, size=size)
        assert error == {"message": message, "type": "invalid_request_error", "param": "size", "code": "invalid_value"}


@pytest.mark.parametrize("size", ["3840x2160", "1024x640", "3072x1024", "1024x3072", "1536x864", "2160x3840"])
def test_flexible_sizes_at_the_limits_are_made(client, size):
    assert generate(client, model="gpt-image-2.5-flare", size=size).size == size


def test_auto_settings_echo_what_was_made(client):
    response = client.images.generate(model="gpt-image-2.5-sunburst", prompt="defaults", size="auto", quality="auto")
    assert (response.size, response.quality, response.background, response.output_format) == (
        "1024x1024",
        "medium",
        "opaque",
        "png",
    )


def test_background(client):
    error = bad_request(client, model="gpt-image-2", background="transparent")
    assert error["param"] == "background" and error["code"] == "invalid_value"
    assert error["message"] == "Invalid value: 'transparent'. Supported values are: 'opaque' and 'auto'."
    assert generate(client, model="gpt-image-2.5-sunburst", background="transparent").background == "transparent"
    webp = generate(client, model="gpt-image-1.5", background="transparent", output_format="webp")
    assert webp.background == "transparent" and webp.output_format == "webp"
    assert generate(client, model="gpt-image-2", background="opaque").background == "opaque"
    jpeg = bad_request(client, model="gpt-image-2.6-sunburst", background="transparent", output_format="jpeg")
    assert jpeg["param"] == "background" and "'png' or 'webp'" in jpeg["message"]


def test_complexity_only_on_2_6(client):
    low = generate(client, model="gpt-image-2.6-sunburst", extra_body={"complexity": "low"})
    default = generate(client, model="gpt-image-2.6-flare")
    assert low.usage.output_tokens == default.usage.output_tokens == 1756  # complexity is not charged
    error = bad_request(client, model="gpt-image-2.6-flare", extra_body={"complexity": "max"})
    assert error["param"] == "complexity"
    assert error["message"] == "Invalid value: 'max'. Supported values are: 'low', 'medium', and 'high'."
    for model in ("gpt-image-2.5-sunburst", "gpt-image-2", "gpt-image-1.5"):
        error = bad_request(client, model=model, extra_body={"complexity": "high"})
        assert error == {
            "message": "Unknown parameter: 'complexity'.",
            "type": "invalid_request_error",
            "param": "complexity",
            "code": "unknown_parameter",
        }


def test_output_format_compression_moderation_and_n(client):
    assert generate(client, output_format="jpeg", output_compression=50).output_format == "jpeg"
    assert decode(generate(client, output_format="webp", output_compression=0).data[0].b64_json).format == "WEBP"
    assert generate(client, output_compression=100).output_format == "png"
    assert bad_request(client, output_compression=50)["param"] == "output_compression"  # png takes no compression
    above = bad_request(client, output_format="jpeg", output_compression=101)
    assert (above["param"], above["code"]) == ("output_compression", "integer_above_max_value")
    assert bad_request(client, output_format="gif")["param"] == "output_format"
    assert bad_request(client, model="gpt-image-2.6-sunburst", output_format="svg")["param"] == "output_format"
    generate(client, moderation="low")
    strict = bad_request(client, moderation="strict")
    assert strict["message"] == "Invalid value: 'strict'. Supported values are: 'low' and 'auto'."
    three = generate(client, n=3)
    assert len(three.data) == 3 and three.usage.output_tokens == 3 * 1756
    assert bad_request(client, n=0)["code"] == "integer_below_min_value"
    assert bad_request(client, n=11)["message"] == (
        "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead."
    )
    unknown = bad_request(client, extra_body={"seed": 7})
    assert (unknown["param"], unknown["code"]) == ("seed", "unknown_parameter")


def test_prompt_length_limit(client):
    generate(client, prompt="x" * 32_000)
    error = bad_request(client, prompt="x" * 32_001)
    assert (error["param"], error["code"]) == ("prompt", "string_above_max_length")


# -- usage ----------------------------------------------------------------------------------------------------------

# Output image tokens of one image, from the research (§4), computed by hand for xhigh/max (assumed factors 144/192).
TOKENS = [
    ("gpt-image-1.5", "low", "1024x1024", 272),
    ("gpt-image-1.5", "low", "1024x1536", 408),
    ("gpt-image-1-mini", "low", "1536x1024", 400),
    ("chatgpt-image-latest", "medium", "1024x1024", 1056),
    ("gpt-image-1.5-2025-12-16", "medium", "1024x1536", 1584),
    ("gpt-image-1.5", "medium", "1536x1024", 1568),
    ("gpt-image-1-mini", "high", "1024x1024", 4160),
    ("gpt-image-1.5", "high", "1024x1536", 6240),
    ("gpt-image-1.5", "high", "1536x1024", 6208),
    ("gpt-image-2", "low", "1024x1024", 196),
    ("gpt-image-2", "low", "1024x1536", 158),
    ("gpt-image-2", "medium", "1536x1024", 1372),
    ("gpt-image-2", "high", "1024x1024", 7024),
    ("gpt-image-2", "high", "1536x1024", 5488),
    ("gpt-image-2", "high", "1792x1024", 5063),
    ("gpt-image-2", "high", "3584x2048", 12329),
    ("gpt-image-2", "low", "2560x1440", 205),
    ("gpt-image-2-2026-04-21", "medium", "2048x2048", 3568),
    ("gpt-image-2.5-sunburst", "high", "3840x2160", 13342),
    ("gpt-image-2.5-flare", "low", "3840x2160", 371),
    ("gpt-image-2.6-sunburst", "medium", "1024x1024", 1756),
    ("gpt-image-2.5-sunburst", "xhigh", "1024x1024", 15804),
    ("gpt-image-2.6-flare", "max", "1024x1024", 28096),
    ("gpt-image-2.5-sunburst-2026-09-08", "xhigh", "1536x1024", 12348),
    ("gpt-image-2.6-sunburst", "max", "1536x864", 17248),
]


@pytest.mark.parametrize("model, quality, size, tokens", TOKENS)
def test_output_image_tokens(client, model, quality, size, tokens):
    response = generate(client, model=model, quality=quality, size=size, prompt="twelve chars")
    assert response.usage.output_tokens == response.usage.output_tokens_details.image_tokens == tokens
    assert response.usage.total_tokens == 3 + tokens


def test_usage_shape_and_text_tokens(srv):
    status, _, body = post(srv, {"model": "gpt-image-2.5-sunburst", "prompt": "x" * 10, "quality": "low"})
    assert status == 200
    assert body["usage"] == {
        "input_tokens": 3,  # ceil(10 / 4)
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 3},
        "output_tokens": 196,
        "output_tokens_details": {"image_tokens": 196, "text_tokens": 0},
        "total_tokens": 199,
    }
    assert post(srv, {"model": "gpt-image-2", "prompt": "x" * 8})[2]["usage"]["input_tokens"] == 2


def test_usage_without_output_details():
    with FakeOpenAI(api_key="sk-test", usage_shape="no_details") as server:
        _, _, body = post(server, {"model": "gpt-image-2", "prompt": "a red fox"})
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        parsed = generate(client).usage
    assert body["usage"] == {
        "input_tokens": 3,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 3},
        "output_tokens": 1756,
        "total_tokens": 1759,
    }
    assert parsed.output_tokens_details is None and parsed.output_tokens == 1756


def test_cost_from_list_prices_is_deterministic(client):
    """The workflow's tests can price answers: text $5/M in, image $30/M out for gpt-image-2.5 (research §3)."""
    usages = [generate(client, model="gpt-image-2.5-sunburst", prompt="a red fox", n=2).usage for _ in range(2)]
    assert usages[0] == usages[1]
    cost = usages[0].input_tokens * 5 / 1e6 + usages[0].output_tokens_details.image_tokens * 30 / 1e6
    assert cost == pytest.approx((3 * 5 + 2 * 1756 * 30) / 1e6)


# -- errors as the real API sends them --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, status, error",
    [
        (
            "billing",
            400,
            {
                "code": "billing_hard_limit_reached",
                "message": "Billing hard limit has been reached",
                "param": None,
                "type": "invalid_request_error",
            },
        ),
        (
            "quota",
            429,
            {
                "code": "insufficient_quota",
                "message": "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "param": None,
                "type": "insufficient_quota",
            },
        ),
    ],
)
def test_account_errors(srv, kind, status, error):
    srv.default_behavior = kind
    assert post(srv, {"model": "gpt-image-2", "prompt": "p"})[0::2] == (status, {"error": error})


def test_moderation_body_names_the_request(srv, client):
    srv.set_behavior("forbidden", "moderation")
    with pytest.raises(openai.BadRequestError) as caught:
        generate(client, prompt="something forbidden")
    request_id = caught.value.response.headers["x-request-id"]
    assert caught.value.response.json() == {
        "error": {
            "message": "Your request was rejected by the safety system. If you believe this is an error, contact us "
            f"at help.openai.com and include the request ID {request_id}. safety_violations=[sexual].",
            "type": "image_generation_user_error",
            "param": None,
            "code": "moderation_blocked",
            "moderation_details": {"moderation_stage": "input", "categories": ["sexual"]},
        }
    }


def test_retired_model_behaviour(srv, client):
    srv.set_behavior("sunset", "retired_model")
    status, error = refusal(lambda: generate(client, model="gpt-image-2.5-sunburst", prompt="at sunset"))
    assert (status, error["code"], error["param"]) == (400, "invalid_value", "model")
    assert error["message"].startswith("Invalid value: 'gpt-image-2.5-sunburst'. Supported values are: ")
    assert "'gpt-image-2.5-sunburst'," not in error["message"]
    assert srv.calls[0]["behavior"] == "retired_model" and not srv.calls[0]["paid"]


def test_bad_retry_after(srv, client):
    srv.fail_times("fox", "bad_retry_after", 1)
    with pytest.raises(openai.RateLimitError) as caught:
        generate(client)
    headers = caught.value.response.headers
    assert caught.value.code == "rate_limit_exceeded"
    assert headers["retry-after"] == "soon" and "retry-after-ms" not in headers
    retrying = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=1, timeout=10)
    srv.fail_times("fox", "bad_retry_after", 1)
    assert decode(generate(retrying).data[0].b64_json).format == "PNG"  # the client falls back to its own backoff


def test_fault_mix_of_bad_retry_after(srv, client):
    srv.set_fault_mix(rate=0.3, kinds=["bad_retry_after"], seed=3)
    statuses = [_status(client, f"mixed {index}") for index in range(100)]
    assert 15 <= statuses.count(429) <= 45 and set(statuses) == {200, 429}
    assert {call["behavior"] for call in srv.calls if call["status"] == 429} == {"bad_retry_after"}
    srv.set_fault_mix(rate=1.0, kinds=TRANSIENT + MORE_TRANSIENT)  # any kind can join the default ones


def test_every_behaviour_name_still_works():
    old = "ok jpeg webp url slow moderation quota content_policy billing forbidden model_not_found rate_limit "
    old += "server_error overloaded truncated reset bad_base64 not_image timeout_408 conflict_409 slow_down bad_gateway"
    assert set(old.split()) | {"bad_retry_after", "retired_model", "invalid_request"} == BEHAVIORS


# -- rate-limit headers -----------------------------------------------------------------------------------------------

DURATION = re.compile(r"(\d+m)?(\d+(\.\d+)?s|\d+ms)")


def test_a_plain_refusal_names_no_setting(srv, client):
    srv.set_behavior("row", "invalid_request")
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="gpt-image-2", prompt="this row")
    assert refused.value.code == "invalid_prompt" and refused.value.param is None


def test_image_limiter_headers_and_429(srv):
    srv.set_rate_limit(4, unit="images")
    status, headers, body = post(srv, {"model": "gpt-image-2", "prompt": "three", "n": 3})
    assert status == 200 and len(body["data"]) == 3
    assert (headers["x-ratelimit-limit-images"], headers["x-ratelimit-remaining-images"]) == ("4", "1")
    assert DURATION.fullmatch(headers["x-ratelimit-reset-images"])
    status, headers, body = post(srv, {"model": "gpt-image-2", "prompt": "two more", "n": 2})
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert body["error"]["message"].startswith(
        "Rate limit exceeded for images per minute in organization org-standin. Limit: 4/1min. Current: 5/1min. "
    )
    assert headers["x-ratelimit-remaining-images"] == "1" and 0 < int(headers["retry-after-ms"]) <= 60_000
    status, headers, _ = post(srv, {"model": "gpt-image-2", "prompt": "one more"})
    assert status == 200 and headers["x-ratelimit-remaining-images"] == "0"
    assert srv.stats()["limited"] == 1
    with pytest.raises(ValueError):
        srv.set_rate_limit(4, unit="tokens")


def test_image_limiter_frees_after_the_window(srv):
    srv.set_rate_limit(2, window=0.5, unit="images")
    assert post(srv, {"model": "gpt-image-2", "prompt": "pair", "n": 2})[0] == 200
    status, headers, _ = post(srv, {"model": "gpt-image-2", "prompt": "later"})
    assert status == 429 and int(headers["retry-after-ms"]) <= 500
    retrying = OpenAI(api_key="sk-test", base_url=srv.base_url, max_retries=3, timeout=10)
    assert generate(retrying, prompt="later").usage.output_tokens == 1756


@pytest.mark.parametrize("seconds, text", [(0.25, "250ms"), (1, "1s"), (1.5, "1.5s"), (90, "1m30s")])
def test_reset_durations(seconds, text):
    assert _duration(seconds) == text


def test_fail_nth_answers_the_nth_request_whatever_its_prompt(srv, client):
    srv.fail_times("second", "server_error", 1)  # fail_nth goes first; other rules still apply to the others
    srv.fail_nth(3, Behavior("rate_limit", retry_after=1.5))
    srv.fail_nth(1, "overloaded")
    outcomes = [_status(client, prompt) for prompt in ("first", "second", "third", "fourth")]
    assert outcomes == [503, 500, 429, 200]
    assert [call["rule"] for call in srv.calls] == ["fail_nth", "fail_times", "fail_nth", "default"]
    assert srv.calls[2]["answer_headers"]["retry-after-ms"] == "1500"
    with pytest.raises(ValueError, match="counts from 1"):
        srv.fail_nth(0, "overloaded")


def test_calls_record_monotonic_arrival_and_answer_times(srv, client):
    before = time.monotonic()
    generate(client, prompt="one")
    generate(client, prompt="two")
    first, second = srv.calls
    assert before <= first["arrived_monotonic"] <= first["answered_monotonic"] <= second["arrived_monotonic"]
    assert second["answered_monotonic"] <= time.monotonic()
