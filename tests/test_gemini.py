"""The gemini provider: the stand-in through the real google-genai client, the classification of
Google's answers and errors, the choice of provider, and whole runs through `snakemake` against the
stand-in (a refusal in the middle, faults, a rerun that pays nothing twice, the true cost)."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from image_batch.providers import RawResponse
from tests.conftest import update_config
from tests.support.fake_gemini import FakeGemini, expected_color

KEY = "AIzaSy-test-SECRET-gemini-0123456789"
SHEET = (
    "image_id,context,description\n"
    "fox,Nature,A red fox in snow\n"
    "owl,Nature,An owl at night SAFETY\n"
    "cake,Food,A cake with a candle FLAKY\n"
    "tea,Food,A cup of tea BUSY\n"
)


@pytest.fixture
def gemini():
    with FakeGemini(api_key=KEY) as server:
        yield server


@pytest.fixture
def gem(runner, gemini):
    """A project set up for provider gemini against the stand-in, with the sheet above."""
    runner.env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=gemini.base_url)
    (runner.root / "input.csv").write_text(SHEET, encoding="utf-8")
    update_config(
        runner.root,
        input_csv="input.csv",
        provider="gemini",
        gemini={"model": "gemini-3-pro-image", "image_size": "2K", "aspect_ratio": "16:9"},
    )
    return runner


# -- the stand-in, through the real SDK --------------------------------------------------------


def test_stand_in_speaks_the_rest_api_the_sdk_calls(gemini):
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gemini.base_url, api_version="v1beta"))
    config = types.GenerateContentConfig(
        response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="4:1", image_size="4K")
    )
    answer = client.models.generate_content(model="gemini-nano-banana-2.1", contents="a fox", config=config)
    images = [p for p in answer.candidates[0].content.parts if p.inline_data and not p.thought]
    assert len(images) == 1 and images[0].inline_data.data[:2] == b"\xff\xd8"  # JPEG labelled image/png
    assert answer.usage_metadata.candidates_tokens_details[0].token_count == 2000
    call = gemini.calls[-1]
    assert call["path"] == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
    assert call["generation_config"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "4:1", "imageSize": "4K"},
    }
    assert call["key_in_header"] and not call["key_in_query"] and not call["key_in_body"]

    wrong = genai.Client(api_key="AIza-wrong", http_options=types.HttpOptions(base_url=gemini.base_url))
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model="gemini-3-pro-image", contents="x", config=config)
    assert caught.value.code == 400
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    gemini.set_behavior("slow down", "rate_limit")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-nano-banana-2.1", contents="slow down", config=config)
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert any(d.get("retryDelay") == "0.05s" for d in caught.value.details["error"]["details"])


# -- what answers and errors mean ---------------------------------------------------------------


def _api_error(gemini, behavior, **request):
    from google.genai import errors

    from image_batch.default_plugins.gemini import GeminiImagesProvider

    params = GeminiImagesProvider.request_params({"model": "gemini-3-pro-image", **request}, {})
    params["base_url"] = gemini.base_url
    request = {"provider": "gemini", **params, "prompt": f"prompt {behavior}"}
    if behavior:
        gemini.set_behavior(f"prompt {behavior}", behavior)
    provider = GeminiImagesProvider({})
    with pytest.raises(errors.APIError) as caught:
        provider.fetch(request)
    return provider.classify(caught.value, request)


@pytest.mark.parametrize(
    "behavior, disposition, words",
    [
        ("rate_limit", "retry", ["429 RESOURCE_EXHAUSTED"]),
        ("daily_quota", "fatal", ["daily quota", "GenerateRequestsPerDayPerProjectPerModel"]),
        ("server_error", "retry", ["500 INTERNAL"]),
        ("unavailable", "retry", ["503 UNAVAILABLE"]),
        ("timeout", "retry", ["504 DEADLINE_EXCEEDED"]),
        ("permission_denied", "fatal", ["403", "access denied"]),
        ("bad_request", "row", ["refused the request"]),
    ],
)
def test_google_errors_are_classified(gemini, monkeypatch, behavior, disposition, words):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    fault = _api_error(gemini, behavior)
    assert fault.disposition == disposition
    assert all(word in fault.reason for word in words), fault.reason
    if behavior == "rate_limit":
        assert fault.retry_after == pytest.approx(0.05)  # RetryInfo, not a header


def test_key_model_and_field_errors_stop_the_run(gemini, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-not-the-key")
    fault = _api_error(gemini, None)
    assert fault.disposition == "fatal" and "GEMINI_API_KEY" in fault.reason
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    fault = _api_error(gemini, None, model="gemini-9-image")
    assert fault.disposition == "fatal" and fault.status == 404 and "gemini.model" in fault.reason
    fault = _api_error(gemini, None, image_size="3K")
    assert fault.disposition == "fatal" and "image_size" in fault.reason


def test_refusals_and_thought_images():
    from image_batch.default_plugins.gemini import find_image
    from image_batch.images.faults import InvalidResponse, Refused

    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3}}
    with pytest.raises(Refused) as caught:
        find_image(blocked)
    assert caught.value.code == "PROHIBITED_CONTENT"
    safety = {"candidates": [{"content": {"parts": [{"text": "no"}]}, "finishReason": "IMAGE_SAFETY"}]}
    with pytest.raises(Refused) as caught:
        find_image(safety)
    assert caught.value.code == "IMAGE_SAFETY" and "IMAGE_SAFETY" in str(caught.value)
    with pytest.raises(InvalidResponse):
        find_image({"candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS"}]})
    final = {"inline_data": {"mime_type": "image/png", "data": "AQID"}}
    draft = {"inlineData": {"mimeType": "image/png", "data": "BAUG"}, "thought": True}
    data, part = find_image({"candidates": [{"content": {"parts": [draft, {"text": "hi"}, final]}}]})
    assert data == b"\x01\x02\x03" and part is final["inline_data"]
    data, _ = find_image({"candidates": [{"content": {"parts": [final, draft]}}]})  # a thought image is never it
    assert data == b"\x01\x02\x03"


def test_provider_choice_by_keys():
    from image_batch.common.settings import resolve
    from tests.conftest import settings_for

    auto = settings_for()
    assert resolve(auto, {"GEMINI_API_KEY": KEY}).provider == "gemini"
    assert resolve(auto, {"GOOGLE_API_KEY": KEY}).provider == "gemini"
    assert resolve(auto, {"GEMINI_API_KEY": KEY, "AI_API_KEY": "sk-x"}).provider == "openai"
    assert resolve(auto, {}).provider == "offline"
    # gemini chosen with no Gemini key: planned and priced; a real run stops, naming the variable
    assert "GEMINI_API_KEY" in resolve(settings_for(provider="gemini"), {"AI_API_KEY": "sk-x"}).missing_key


def test_endpoint_and_version_are_part_of_the_request_but_not_of_openai_ones():
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.default_plugins.openai_images import OpenAIImagesProvider

    one = GeminiImagesProvider.request_params({"model": "m"}, {"GOOGLE_GEMINI_BASE_URL": "http://a/"})
    assert one == {"endpoint": "generateContent", "base_url": "http://a", "api_version": "v1beta", "model": "m"}
    assert GeminiImagesProvider.request_params({"model": "m"}, {})["base_url"].startswith("https://generativelanguage")
    # the OpenAI request (so its store key) is what it was before the gemini provider existed
    assert OpenAIImagesProvider.request_params({"model": "gpt-image-2", "size": "1024x1024"}, {}) == {
        "endpoint": "images/generations",
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-image-2",
        "size": "1024x1024",
    }


# -- whole runs through snakemake ---------------------------------------------------------------


def _sidecar(root, stem):
    return json.loads((root / "results/images" / f"{stem}.json").read_text())


def _files_with(root, text):
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(path)
            except OSError:
                pass
    return found


def test_a_sheet_runs_through_gemini_with_every_guarantee(gem, gemini):
    gemini.set_behavior("SAFETY", "image_safety")
    gemini.fail_times("FLAKY", "unavailable", 2)
    gemini.fail_times("BUSY", "rate_limit", 1)
    gemini.retry_delay = "0.25s"  # google.rpc.RetryInfo: the wait before the next attempt
    update_config(gem.root, retry={"max_wait": 1})  # (the tests' backoff is capped at 0.05 s)
    dry = gem.snakemake("-n")
    assert "4 to pay for: about $0.54 live, $0.27 in batch mode" in dry.output, dry.output[-3000:]
    assert gemini.calls == []  # a dry run calls nothing

    first = gem.snakemake(check=False)
    assert first.returncode != 0  # one row failed
    assert "IMAGE_SAFETY" in first.output
    for stem, prompt in (("nature/fox", "A red fox in snow"), ("food/cake", "A cake with a candle FLAKY")):
        png = (gem.root / "results/images" / f"{stem}.png").read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG"  # normalised from the JPEG answer (colours within JPEG's rounding)
            got = image.convert("RGB").getpixel((0, 0))
            assert all(abs(a - b) <= 3 for a, b in zip(got, expected_color(prompt), strict=True))
        sidecar = _sidecar(gem.root, stem)
        assert sidecar["provider"] == "gemini" and sidecar["source_format"] == "JPEG"
        assert sidecar["image_size"] == "2K" and sidecar["aspect_ratio"] == "16:9"
        assert sidecar["endpoint"] == gemini.base_url
        usage = sidecar["usage"]["usage_metadata"]
        tokens_in, thoughts = usage["promptTokenCount"], usage["thoughtsTokenCount"]
        expected = (tokens_in * 2.0 + 1120 * 120.0 + thoughts * 12.0) / 1_000_000
        assert sidecar["cost"]["usd"] == pytest.approx(expected) and sidecar["cost"]["basis"] == "usage"
    assert not (gem.root / "results/images/nature/owl.png").exists()
    assert len(gemini.calls_for("FLAKY")) == 3 and len(gemini.calls_for("BUSY")) == 2
    assert "429 RESOURCE_EXHAUSTED" in (log := (gem.root / "results/logs/images/food/tea.log").read_text())
    assert "retrying in 0.25s" in log, log  # the server's RetryInfo delay, not the backoff's
    assert len(gemini.calls_for("SAFETY")) == 1  # a refusal is not asked again
    # every paid answer is in the store, as received (the refused one set aside with its reason)
    entries = list((gem.root / "response-store").glob("??/*.json"))
    assert len(entries) == 3
    bodies = [json.loads(json.loads(p.read_text())["body"]) for p in entries]
    assert all(b["candidates"][0]["content"]["parts"][-1]["inlineData"]["mimeType"] == "image/png" for b in bodies)
    assert len(list((gem.root / "response-store/rejected").rglob("*.json"))) >= 1
    # the key is never written anywhere
    assert _files_with(gem.root, KEY) == []

    # the next estimate comes from these answers' own usage (the store's usage journal)
    with open(gem.root / "input.csv", "a", encoding="utf-8") as sheet:
        sheet.write("pie,Food,An apple pie\n")
    dry = gem.snakemake("-n")
    # (3 images: the refusal, kept aside, is no image's usage)
    assert "2 x gemini-3-pro-image default quality 2K at about $0.134 each, from the mean usage of your 3 stored" in (
        dry.output
    ), dry.output[-2000:]
    paid = len(gemini.paid_calls)
    gemini.set_behavior("SAFETY", "ok")
    (gem.root / "results/images/nature/fox.png").unlink()  # lost: made again from the store
    second = gem.snakemake()
    assert len(gemini.paid_calls) == paid + 2  # only the row refused before, and the new one
    assert len(gemini.calls_for("A red fox")) == 1
    assert (gem.root / "results/images/nature/owl.png").exists()
    assert "gemini" in second.output


def test_kill_9_while_calling_then_rerun_pays_nothing_twice(gem, gemini):
    update_config(gem.root, gemini={"model": "gemini-nano-banana-2.1", "image_size": None, "aspect_ratio": None})
    gemini.set_behavior("SAFETY", "ok")
    store = gem.root / "response-store"
    command = [sys.executable, "-m", "snakemake", "--cores", "1"]
    process = subprocess.Popen(
        command, cwd=gem.root, env=gem.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(store.glob("??/*.json")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    kept = {json.loads(p.read_text())["request"]["prompt"] for p in store.glob("??/*.json")}
    assert kept, "the run was killed before any answer was kept"
    gem.snakemake()
    for prompt in ("A red fox in snow", "An owl at night SAFETY", "A cake with a candle FLAKY", "A cup of tea BUSY"):
        paid = [c for c in gemini.calls_for(prompt) if c["status"] == 200]
        if prompt in kept:  # paid before the kill and kept: served from the store, never paid again
            assert len(paid) == 1, prompt
        else:  # in flight when killed (answered but never received) at most once, then once
            assert 1 <= len(paid) <= 2, prompt
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4


def test_bad_settings_and_batch_mode_are_refused_before_any_call(gem, gemini):
    update_config(gem.root, gemini={"model": "gemini-3.1-flash-lite-image", "image_size": "4K"})
    result = gem.snakemake(check=False)
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "gemini.image_size '4K' is not taken by 'gemini-3.1-flash-lite-image'" in result.output
    update_config(gem.root, gemini={"model": "gemini-3.1-flash-image", "image_size": None})
    result = gem.snakemake(check=False)
    assert "gemini.model 'gemini-3.1-flash-image' was shut down on 2026-10-29" in result.output
    assert "Traceback" not in result.output
    update_config(gem.root, gemini={"model": "imagen-4.0-generate-001", "image_size": None})  # left the Gemini API
    result = gem.snakemake(check=False)
    assert "gemini.model 'imagen-4.0-generate-001' was shut down on 2026-08-17" in result.output, result.output[-2000:]
    assert gemini.calls == [] and gemini.batch_creates == 0


# -- batch mode ----------------------------------------------------------------------------------


def _batch_state(root):
    path = root / "response-store/batches/gemini.json"
    return json.loads(path.read_text()) if path.exists() else {"batches": []}


def test_batch_mode_makes_the_same_files_at_half_price_and_never_calls_live(gem, gemini):
    update_config(gem.root, mode="batch", batch={"poll_seconds": 0.05})
    gemini.set_behavior("SAFETY", "image_safety")
    gemini.fail_times("FLAKY", "unavailable", 1)  # a transient line error: submitted again in round 2
    first = gem.snakemake(check=False)
    assert first.returncode != 0 and "IMAGE_SAFETY" in first.output  # the refused row fails alone
    assert gemini.calls == []  # never a live (full-price) call
    assert gemini.batch_creates == 2
    lines = [(line["prompt"], line["status"]) for line in gemini.batch_lines]
    assert sorted(lines) == sorted(
        [
            ("A red fox in snow", 200),
            ("An owl at night SAFETY", 200),
            ("A cake with a candle FLAKY", 503),
            ("A cup of tea BUSY", 200),
            ("A cake with a candle FLAKY", 200),
        ]
    )
    for stem in ("nature/fox", "food/cake", "food/tea"):
        sidecar = _sidecar(gem.root, stem)
        assert sidecar["source_format"] == "JPEG" and sidecar["image_size"] == "2K"
        usage = sidecar["usage"]["usage_metadata"]
        live = (usage["promptTokenCount"] * 2.0 + 1120 * 120.0 + usage["thoughtsTokenCount"] * 12.0) / 1_000_000
        assert sidecar["cost"]["price"] == "batch" and sidecar["cost"]["usd"] == pytest.approx(live / 2)
    assert not (gem.root / "results/images/nature/owl.png").exists()
    assert _files_with(gem.root, KEY) == []

    # a rerun submits only the row refused before; what is stored is never submitted again
    gemini.set_behavior("SAFETY", "ok")
    (gem.root / "results/images/nature/fox.png").unlink()
    gem.snakemake()
    assert gemini.batch_creates == 3 and gemini.calls == []
    assert [line["prompt"] for line in gemini.batch_lines[5:]] == ["An owl at night SAFETY"]
    assert (gem.root / "results/images/nature/fox.png").exists()


def _stop_a_waiting_batch_run(gem, gemini, sig, command=None):
    """Start a batch-mode run whose batch runs until the test says otherwise, and send ``sig`` to
    its process group once the batch is created and polled."""
    update_config(gem.root, mode="batch", batch={"poll_seconds": 0.05})
    gemini.set_behavior("SAFETY", "ok")
    gemini.batch_polls_to_complete = 10**9  # the batch runs until the test says otherwise
    command = command or [sys.executable, "-m", "snakemake", "--cores", "1"]
    process = subprocess.Popen(
        command, cwd=gem.root, env=gem.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            batches = _batch_state(gem.root)["batches"]
            if batches and batches[0].get("id") and len(gemini.batch_requests) >= 3:  # created, then polled
                break
            time.sleep(0.02)
        os.killpg(process.pid, sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_batch_mode_survives_kill_9_while_waiting_without_a_second_submission(gem, gemini):
    _stop_a_waiting_batch_run(gem, gemini, signal.SIGKILL)
    assert gemini.batch_creates == 1 and gemini.batch_lines == []
    gemini.batch_polls_to_complete = 1
    gem.snakemake()
    assert gemini.batch_creates == 1  # the same batch was polled again, not submitted twice
    assert gemini.calls == [] and len(gemini.batch_lines) == 4
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4


def test_main_py_killed_by_kill_9_while_waiting_takes_its_run_along_and_a_rerun_polls_the_same_batch(gem, gemini):
    """kill -9 on main.py's process group: the Snakemake run it started (a process group of its own,
    for Ctrl-C) dies with it instead of waiting on alone and holding the folder's lock, so running
    the same command again polls the same batch (no second submission) and makes every image."""
    from image_batch.run.lock import holder

    _stop_a_waiting_batch_run(gem, gemini, signal.SIGKILL, [sys.executable, "main.py", "input.csv"])
    lock = gem.root / ".snakemake/image-batch.lock"
    deadline = time.monotonic() + 60
    while holder(lock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder(lock) is None, "the run main.py started outlived it"
    gemini.batch_polls_to_complete = 1
    result = gem.main("input.csv")
    assert result.returncode == 0, result.output[-3000:]
    assert gemini.batch_creates == 1 and gemini.calls == [] and len(gemini.batch_lines) == 4
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4


def _two_pending_batch_lines(gemini, monkeypatch, tmp_path, **changes):
    """Batch-mode settings at the stand-in, two requests (prompts "one", "two") not in the store, a
    runner, and their one chunk of batch lines: (settings, specs, runner, (model, lines, digest))."""
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.images.gemini_batch import GeminiBatchRunner, chunks, pending
    from image_batch.images.store import open_store
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    settings = settings_for(provider="gemini", mode="batch", batch={"poll_seconds": 0.01}, **changes)
    params = GeminiImagesProvider.request_params(settings.section("gemini"))
    specs = [{"request": {"provider": "gemini", **params, "prompt": p}} for p in ("one", "two")]
    runner = GeminiBatchRunner(settings, lambda line: None)
    [chunk] = chunks(pending(specs, open_store(settings)), runner.provider, 500, 10**7)
    return settings, specs, runner, chunk


def test_a_batch_killed_while_being_created_is_found_again_not_submitted_twice(gem, gemini, monkeypatch, tmp_path):
    """The record says "submitting" (the run died between creating the batch and recording its id):
    the next run finds the batch by its display name and polls it."""
    from image_batch.images.gemini_batch import PREFIX
    from image_batch.images.store import open_store

    settings, specs, runner, (model, lines, digest) = _two_pending_batch_lines(gemini, monkeypatch, tmp_path)
    client = runner.client(specs[0]["request"])
    client.batches.create(  # what the killed run had sent
        model=model, src=[{**b, "metadata": {"key": k}} for k, b in lines], config={"display_name": PREFIX + digest}
    )
    for other in ("other-1", "other-2"):  # newer batches: the one sought is on the list's second page
        client.batches.create(model=model, src=[lines[0][1]], config={"display_name": other})
    folder = Path(open_store(settings).state_dir) / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    keys = [k for k, _ in lines]
    (folder / "gemini.json").write_text(
        json.dumps({"batches": [{"digest": digest, "keys": keys, "status": "submitting"}]})
    )
    result = runner.run(specs)
    assert gemini.batch_creates == 3 and result["stored"] == 2 and not result["failed"]
    assert any("pageToken=" in r["query"] for r in gemini.batch_requests)  # it read the second page


@pytest.mark.parametrize(
    "stand_in",
    [
        {},
        {"results_as_file": True},
        {"drop_metadata": True},
        {"shuffle_results": True},
        {"results_as_file": True, "shuffle_results": True},
        {"output_in": "response"},  # the output only in the operation's response
        {"output_in": "metadata"},  # the output only in metadata.output
        {"results_as_file": True, "download_path": "docs"},  # the file only at /download/v1beta/files/...
        {"results_as_file": True, "download_path": "sdk"},  # the file only at /v1beta/files/...
    ],
)
def test_an_expired_batch_goes_again_and_results_in_a_file_are_read(gemini, monkeypatch, tmp_path, stand_in):
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    for name, value in stand_in.items():
        setattr(gemini, name, value)
    as_file = stand_in.get("results_as_file", False)
    gemini.expire_next_batches = 1  # the first batch ends EXPIRED with no line run (not billed)
    settings = settings_for(provider="gemini", mode="batch", batch={"poll_seconds": 0.01})
    params = GeminiImagesProvider.request_params(settings.section("gemini"))
    specs = [{"request": {"provider": "gemini", **params, "prompt": p}} for p in ("one", "two", "three")]
    result = GeminiBatchRunner(settings, lambda line: None).run(specs)
    assert gemini.batch_creates == 2 and result["rounds"] == 2
    assert result["stored"] == 3 and not result["failed"] and len(result["bought"]) == 3
    assert sorted(line["prompt"] for line in gemini.batch_lines) == ["one", "three", "two"]  # each run once
    assert any(":download" in r["path"] for r in gemini.batch_requests) == as_file
    # each answer is stored under its own request's key (by the key in its line, whatever the order)
    from image_batch.images.store import open_store, request_key

    store, provider = open_store(settings), GeminiImagesProvider({})
    for spec in specs:
        entry = store.get(request_key(spec["request"]))
        image = provider.decode(RawResponse(body=entry["body"]), spec["request"])
        with Image.open(io.BytesIO(image.data)) as picture:
            got = picture.convert("RGB").getpixel((0, 0))
        assert all(abs(a - b) <= 3 for a, b in zip(got, expected_color(spec["request"]["prompt"]), strict=True))


def test_batch_mode_stops_with_one_clear_line_on_a_fatal_api_error(gem, gemini):
    lite = {"model": "gemini-3.1-flash-lite-image", "image_size": "1K"}
    update_config(gem.root, mode="batch", batch={"poll_seconds": 0.05}, gemini=lite)
    gemini.models.pop("gemini-3.1-flash-lite-image")  # the account no longer has it: 404 on create
    result = gem.snakemake(check=False)
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "Gemini batch mode stopped: 404 NOT_FOUND" in result.output and "gemini.model" in result.output
    assert gemini.batch_creates == 0 and gemini.calls == []


def test_a_gemini_batch_given_up_is_collected_by_live_mode_not_paid_again(gem, gemini):
    """A batch-mode run stopped while waiting (SIGINT to its process group, as Ctrl-C sends), then the
    same sheet in live mode: live mode waits for the recorded batch and collects it, and pays for
    nothing live; the estimate says the requests are in a batch."""
    _stop_a_waiting_batch_run(gem, gemini, signal.SIGINT)
    assert gemini.batch_creates == 1 and gemini.batch_lines == []
    update_config(gem.root, mode="live")
    dry = gem.snakemake("-n")
    assert "0 to pay for" in dry.output and "in batches submitted earlier" in dry.output, dry.output[-3000:]
    gemini.batch_polls_to_complete = 3
    gem.snakemake()
    assert gemini.calls == [] and gemini.batch_creates == 1  # collected, not paid again live
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4


def test_batch_line_errors_are_read_as_grpc_status_or_http_errors():
    """A batch line's error is a google.rpc.Status (a gRPC code, 14 for UNAVAILABLE, and no status
    name): the transient ones go again, the others fail the row; an HTTP-shaped one reads the same."""
    from image_batch.images.gemini_batch import line_error

    assert line_error({"code": 14, "message": "The model is overloaded."}) == (
        True,
        "the Batch API answered UNAVAILABLE (14): The model is overloaded.",
    )
    assert line_error({"code": 8, "message": "quota"})[0] and line_error({"code": 13})[0]
    assert line_error({"code": 3, "message": "bad"}) == (False, "the Batch API answered INVALID_ARGUMENT (3): bad")
    assert not line_error({"code": 7})[0] and not line_error({"code": 5})[0]
    assert line_error({"code": 503, "status": "UNAVAILABLE", "message": "x"})[0]
    assert line_error({"code": 429, "message": "x"})[0]
    assert not line_error({"code": 400, "status": "INVALID_ARGUMENT", "message": "x"})[0]
    assert line_error(None) == (False, "the Batch API answered 0: no reason")


def test_a_gemini_batch_abandoned_is_cancelled_and_its_images_made_live(gem, gemini):
    """batch={abandon: true} in live mode: the recorded batch is cancelled (POST batches/<id>:cancel)
    and what it did not answer is made live, once."""
    _stop_a_waiting_batch_run(gem, gemini, signal.SIGINT)
    assert gemini.batch_creates == 1 and gemini.batch_lines == []
    update_config(gem.root, mode="live", batch={"abandon": True, "poll_seconds": 0.05})
    result = gem.snakemake()
    assert gemini.cancelled == list(gemini.batches)
    assert "Traceback" not in result.output
    assert len(gemini.paid_calls) == 4 and gemini.batch_creates == 1
    assert len(list((gem.root / "results/images").rglob("*.png"))) == 4


def test_google_errors_read_from_their_message_when_details_are_missing():
    """Another endpoint (a gateway, a proxy) may pass Google's error on without its details: a bad
    key still stops the run (every row would be refused the same), a refused aspect ratio too."""
    from image_batch.default_plugins.gemini import classify_google_error

    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
        }
    }
    fault = classify_google_error(400, "INVALID_ARGUMENT", body, {})
    assert fault.disposition == "fatal" and "GEMINI_API_KEY" in fault.reason and "GOOGLE_API_KEY" in fault.reason
    body = {"error": {"code": 400, "message": "Unsupported aspect ratio: 7:3", "status": "INVALID_ARGUMENT"}}
    assert classify_google_error(400, "INVALID_ARGUMENT", body, {}, {"aspect_ratio": "7:3"}).disposition == "fatal"
    body = {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}
    assert classify_google_error(400, "INVALID_ARGUMENT", body, {}).disposition == "row"


def test_image_bytes_in_either_base64_alphabet_are_read():
    """Proto JSON takes standard or URL-safe base64, padded or not (google-genai's own types write the
    URL-safe kind): an answer in either is the same image, never a broken answer paid again."""
    from image_batch.default_plugins.gemini import find_image

    for text in ("+/8=", "-_8=", "-_8"):
        answer = {"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": text}}]}}]}
        assert find_image(answer)[0] == b"\xfb\xff", text


def test_google_api_key_wins_over_gemini_api_key_as_in_the_sdk(gem, gemini):
    """Both set: GOOGLE_API_KEY is the one sent (google-genai's order), in the x-goog-api-key header."""
    gem.env.update(GOOGLE_API_KEY=KEY, GEMINI_API_KEY="AIzaSy-stale-key")
    (gem.root / "input.csv").write_text("image_id,context,description\nfox,Nature,A red fox in snow\n")
    gem.snakemake()
    assert len(gemini.paid_calls) == 1 and all(c["key_in_header"] for c in gemini.calls)


def test_faults_of_the_batch_endpoints_are_retried_and_a_lost_create_answer_makes_no_second_batch(
    gemini, monkeypatch, tmp_path
):
    """503 / 429 (with RetryInfo) / 500 on creating, polling, listing and downloading are retried with
    backoff, as live calls are; a create whose answer was lost (the batch was made) is found by its
    display name before trying again: one batch, every line once, nothing failed."""
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    gemini.results_as_file = True
    gemini.lose_create_answers = 1
    gemini.fail_batch_times("create", "rate_limit", 1)
    gemini.fail_batch_times("list", "server_error", 1)
    gemini.fail_batch_times("get", "unavailable", 2)
    gemini.fail_batch_times("download", "timeout", 1)
    retry = {"initial_wait": 0.01, "max_wait": 0.05}
    settings = settings_for(provider="gemini", mode="batch", batch={"poll_seconds": 0.01}, retry=retry)
    params = GeminiImagesProvider.request_params(settings.section("gemini"))
    specs = [{"request": {"provider": "gemini", **params, "prompt": p}} for p in ("one", "two")]
    said = []
    result = GeminiBatchRunner(settings, said.append).run(specs)
    assert result["stored"] == 2 and not result["failed"], said
    assert gemini.batch_creates == 1 and sorted(line["prompt"] for line in gemini.batch_lines) == ["one", "two"]
    assert not any(fault[2] for fault in gemini._batch_faults)  # every fault was met
    assert any("created although its answer was lost" in line for line in said), said


def test_a_gemini_outage_longer_than_the_retry_budget_while_polling_is_waited_out(gemini, monkeypatch, tmp_path):
    """As OpenAI's batch mode: a 24-hour wait outlives an outage that exhausts retry.max_attempts for
    one poll; the batch is polled again later (not a stopped run), and nothing is submitted twice."""
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from tests.conftest import FAST_RETRY

    settings, specs, _, _ = _two_pending_batch_lines(gemini, monkeypatch, tmp_path, retry=FAST_RETRY)

    gemini.fail_batch_times("get", "unavailable", 3 * settings.retry.max_attempts)
    said = []
    result = GeminiBatchRunner(settings, said.append).run(specs)
    assert result["stored"] == 2 and not result["failed"], said
    assert gemini.batch_creates == 1 and not any(fault[2] for fault in gemini._batch_faults)
    assert any("polling again later" in line for line in said), said


def test_a_recorded_gemini_batch_the_api_no_longer_knows_is_marked_gone_and_asked_again(gemini, monkeypatch, tmp_path):
    """A batch recorded by an earlier run that the API answers 404 for (deleted, or kept no longer):
    marked gone, said once, its requests submitted again; it never blocks every later run."""
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from image_batch.images.store import open_store

    settings, specs, _, (model, lines, digest) = _two_pending_batch_lines(gemini, monkeypatch, tmp_path)
    folder = Path(open_store(settings).state_dir) / "batches"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"digest": digest, "id": "batches/long-gone", "model": model, "keys": [k for k, _ in lines]}
    (folder / "gemini.json").write_text(json.dumps({"batches": [{**record, "status": "RUNNING"}]}))
    said = []
    result = GeminiBatchRunner(settings, said.append).run(specs)
    assert result["stored"] == 2 and not result["failed"] and gemini.batch_creates == 1
    assert [line for line in said if "batches/long-gone" in line and "404" in line], said
    state = json.loads((folder / "gemini.json").read_text())
    assert state["batches"][0]["status"] == "GONE" and state["batches"][0]["collected"]


def test_answers_of_other_shapes_the_api_may_send():
    """Several candidates (the image in the second), a refusal with no content at all, and usage
    without per-modality details or thinking tokens: read as the image, the refusal and the usage."""
    from image_batch.default_plugins.gemini import find_image, usage_of
    from image_batch.images.faults import Refused

    image = {"content": {"parts": [{"text": "here"}, {"inlineData": {"mimeType": "image/jpeg", "data": "AQID"}}]}}
    refused = {"finishReason": "IMAGE_SAFETY", "index": 0}
    assert find_image({"candidates": [refused, image]})[0] == b"\x01\x02\x03"
    with pytest.raises(Refused) as caught:
        find_image({"candidates": [refused], "usageMetadata": {"promptTokenCount": 9}})
    assert caught.value.code == "IMAGE_SAFETY"
    usage = usage_of({"promptTokenCount": 9, "candidatesTokenCount": 1120, "totalTokenCount": 1129})
    assert usage["output_tokens_details"] == {"image_tokens": 1120, "text_tokens": 0}
    assert usage["input_tokens_details"]["text_tokens"] == 9
    assert usage_of(None) is None


def test_a_batch_resubmitted_with_the_same_lines_is_told_apart_from_the_expired_one(gemini, monkeypatch, tmp_path):
    """Round 2 submits the lines of an expired batch again (the same input): a run killed while
    creating it finds the batch it was creating, not the expired one with the same input (in
    whatever order the API lists them), so the new batch is polled and nothing is submitted a third time."""
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    gemini.list_oldest_first = True
    gemini.expire_next_batches = 1  # round 1's batch expires, unrun
    gemini.lose_create_answers = 0
    retry = {"max_attempts": 1}  # the create whose answer is lost stops the run, as a kill would
    settings = settings_for(provider="gemini", mode="batch", batch={"poll_seconds": 0.01}, retry=retry)
    params = GeminiImagesProvider.request_params(settings.section("gemini"))
    specs = [{"request": {"provider": "gemini", **params, "prompt": p}} for p in ("one", "two")]
    runner = GeminiBatchRunner(settings, lambda line: None)
    original = runner.submit

    def submit_then_lose(*args):  # round 2's create: made on the API, its answer lost
        gemini.lose_create_answers = 1 if gemini.batch_creates == 1 else 0
        return original(*args)

    runner.submit = submit_then_lose
    with pytest.raises(Exception, match="503"):
        runner.run(specs)
    assert gemini.batch_creates == 2
    result = GeminiBatchRunner(settings, lambda line: None).run(specs)
    assert result["stored"] == 2 and not result["failed"]
    assert gemini.batch_creates == 2 and sorted(line["prompt"] for line in gemini.batch_lines) == ["one", "two"]


@pytest.mark.parametrize("code, retried", [(13, True), (3, False)])
def test_a_failed_gemini_batch_goes_again_when_its_error_is_transient(gemini, monkeypatch, tmp_path, code, retried):
    """A batch that ends FAILED with no line run: its lines go again in the next round when its error
    (a google.rpc.Status) is transient (13 INTERNAL), and fail their rows with the reason otherwise."""
    from image_batch.default_plugins.gemini import GeminiImagesProvider
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from tests.conftest import settings_for

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
    gemini.fail_next_batches = [(code, "the batch failed")]
    settings = settings_for(provider="gemini", mode="batch", batch={"poll_seconds": 0.01})
    params = GeminiImagesProvider.request_params(settings.section("gemini"))
    specs = [{"request": {"provider": "gemini", **params, "prompt": p}} for p in ("one", "two")]
    result = GeminiBatchRunner(settings, lambda line: None).run(specs)
    if retried:
        assert result["stored"] == 2 and not result["failed"] and gemini.batch_creates == 2
    else:
        assert result["stored"] == 0 and gemini.batch_creates == 1 and len(result["failed"]) == 2
        assert all("INVALID_ARGUMENT (3): the batch failed" in why for why in result["failed"].values())
