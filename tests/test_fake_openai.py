"""The fake Images API answers the real openai client the way the real API does."""

import base64
import io
import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.support.fake_openai import Behavior, FakeOpenAI, expected_color

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
    assert response.usage.input_tokens == 3 and response.usage.output_tokens == 272
    assert response.usage.total_tokens == 275
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
        generate(client, model="dall-e-3")
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
    with pytest.raises(Exception):
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
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "READY" and line[1].startswith("http://127.0.0.1:")
        request = urllib.request.Request(
            line[1] + "/images/generations",
            data=json.dumps({"model": "gpt-image-1", "prompt": "hi"}).encode(),
            headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["usage"]["input_tokens"] == 1
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
