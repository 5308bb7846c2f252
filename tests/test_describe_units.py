"""Prompts written by a model (``describe:``): the pieces, in process (end to end: tests/test_describe.py)."""

import dataclasses
import json

import pytest

from image_batch.common.errors import UserError
from image_batch.common.settings import Choices, Destination
from image_batch.default_plugins.gemini_text import answer_text
from image_batch.default_plugins.offline import OfflineWriter
from image_batch.default_plugins.openai_text import OpenAIResponsesWriter, output_text
from image_batch.descriptions import prompts
from image_batch.descriptions.sheet import Row
from image_batch.descriptions.specs import build_specs, spec_bytes
from image_batch.images.faults import InvalidResponse, Refused
from image_batch.images.store import open_store, request_key
from image_batch.providers import RawResponse
from tests.conftest import settings_for
from tests.support.openai_models import responses_answer

MODEL = "gpt-5.4-mini"
CHOICES = Choices("openai", "test", Destination("local", "results/bucket", ""))


def rows(n, description="a calm lake number {i}"):
    return [Row(i + 2, f"id{i:04d}", "Nature", "nature", description.format(i=i)) for i in range(n)]


def settings(tmp_path, **describe):
    return settings_for(
        response_store=str(tmp_path / "store"),
        openai={"model": "gpt-image-2.5-sunburst", "size": "1024x1024", "quality": "low"},
        describe={"model": MODEL, **describe} if describe.get("model", MODEL) else {"model": None},
    )


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.chdir(tmp_path)


def test_output_text_is_the_text_of_the_message_parts_as_the_sdk_reads_it():
    answer = {
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "content": [
                    {"type": "output_text", "text": "A red fox, "},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "in snow."},
                ],
            },
        ]
    }
    assert output_text(answer) == "A red fox, in snow."
    assert output_text({"output": [{"type": "reasoning"}]}) is None
    writer = OpenAIResponsesWriter({})
    with pytest.raises(InvalidResponse):
        writer.text(RawResponse(body=json.dumps({"status": "incomplete", "output": []}).encode()), {})
    body = json.dumps(responses_answer({"model": MODEL, "input": "a fox", "instructions": "x"}, "resp_1", 0))
    text, usage = writer.text(RawResponse(body=body.encode()), {})
    assert text == "A detailed photo of a fox, natural light, sharp focus" and usage["output_tokens"] > 0


def test_gemini_text_leaves_thoughts_out_and_a_blocked_description_fails_its_row():
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"text": "thinking...", "thought": True}, {"text": " A red fox. "}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14},
    }
    text, usage = answer_text(answer)
    assert text == "A red fox." and usage["input_tokens"] == 10 and usage["output_tokens"] == 4
    with pytest.raises(Refused):
        answer_text({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    with pytest.raises(InvalidResponse):
        answer_text({"candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS"}]})


def test_the_offline_writer_is_deterministic_and_says_what_it_is():
    request = {"input": " a fox ", "instructions": "You write prompts for an image model. More."}
    assert OfflineWriter().write(request) == OfflineWriter().write(dict(request))
    assert OfflineWriter().write(request) == "a fox (offline writer; instructions: You write prompts for an image ...)"


def test_describe_is_off_by_default_and_then_changes_no_request(env, tmp_path):
    off = settings_for(openai={"model": "gpt-image-2.5-sunburst"})
    assert not off.describe.on
    specs = build_specs(rows(3), off, "openai", "sheet.csv")
    before = [spec_bytes(s) for s in specs]
    assert prompts.plan_describe(off, CHOICES, specs, rows(3)) is None
    assert [spec_bytes(s) for s in specs] == before


def test_a_bad_describe_setting_is_one_line_before_any_call(env, tmp_path):
    with pytest.raises(UserError, match="describe.provider"):
        settings_for(describe={"model": MODEL, "provider": "openia"})
    image_model = settings(tmp_path, model="gpt-image-2")
    with pytest.raises(UserError, match="gpt-image-2 is an image model"):
        prompts.plan_describe(image_model, CHOICES, build_specs(rows(1), image_model, "openai", "s"), rows(1))
    gemini_model = settings(tmp_path, model="gemini-3-flash-preview")
    with pytest.raises(UserError, match="set describe.provider: gemini"):
        prompts.plan_describe(gemini_model, CHOICES, build_specs(rows(1), gemini_model, "openai", "s"), rows(1))
    ok = settings(tmp_path)
    with pytest.raises(UserError, match="default storage provider"):
        prompts.plan_describe(ok, CHOICES, build_specs(rows(1), ok, "openai", "s"), rows(1), local=False)


def test_stored_prompts_are_known_at_planning_the_others_go_in_chunks_named_by_content(env, tmp_path):
    config = settings(tmp_path, contexts={"nature": "Nature photos only."})
    sheet = rows(prompts.CHUNK_ROWS * 2 + 50)
    specs = build_specs(sheet, config, "openai", "s")
    first = prompts.plan_describe(config, CHOICES, specs, sheet)
    assert len(first.pending) == len(sheet) and not first.written
    assert [len(members) for members in first.chunk_rows.values()] == [prompts.CHUNK_ROWS, prompts.CHUNK_ROWS, 50]
    assert all(spec["request"]["prompt"] is None and spec["description"] for spec in specs)
    request = first.requests[("nature", "id0000")]
    assert request["instructions"] == "Nature photos only." and request["input"] == "a calm lake number 0"
    assert request["endpoint"] == "responses" and request["base_url"] == "http://127.0.0.1:9/v1"
    assert not list(tmp_path.glob("results/**/*.json"))  # planning writes nothing

    # one answer stored: that row is known (its prompt is the image's), the chunks change
    store = open_store(config)
    body = json.dumps(responses_answer(request, "resp_1", 0)).encode()
    store.keep(request_key(request), request, RawResponse(body=body), "live", print)
    specs = build_specs(sheet, config, "openai", "s")
    second = prompts.plan_describe(config, CHOICES, specs, sheet)
    written = "A detailed photo of a calm lake number 0, natural light, sharp focus"
    assert second.written == {("nature", "id0000"): written}
    assert specs[0]["request"]["prompt"] == second.written[("nature", "id0000")]
    assert len(second.pending) == len(sheet) - 1
    assert set(second.chunk_rows) != set(first.chunk_rows)

    # the same state plans the same chunk files (a job process finds its chunk)
    third = prompts.plan_describe(config, CHOICES, build_specs(sheet, config, "openai", "s"), sheet)
    assert set(third.chunk_rows) == set(second.chunk_rows)


def test_the_estimate_counts_what_is_to_write(env, tmp_path):
    config = settings(tmp_path)
    sheet = rows(10)
    describing = prompts.plan_describe(config, CHOICES, build_specs(sheet, config, "openai", "s"), sheet)
    estimate = prompts.estimate_writing(config, describing)
    assert estimate["to_write"] == 10 and estimate["usd"] > 0
    line = prompts.describe_estimate(estimate)
    assert line.startswith(f"prompts: 10 of 10 to write with openai model {MODEL}") and "an estimate" in line
    # priced at the catalogue's rates: input from the lengths, output a typical prompt's
    chars = len(config.describe.instructions) + len("a calm lake number 0")
    each_min = (chars // 4) * 0.75 / 1e6 + prompts.TYPICAL_OUTPUT_TOKENS * 4.5 / 1e6
    assert each_min * 10 <= estimate["usd"] <= each_min * 10 * 1.01


def test_in_batch_mode_the_prompts_are_estimated_at_the_batch_price(env, tmp_path):
    import dataclasses

    live = settings(tmp_path)
    batch = dataclasses.replace(live, mode="batch")
    sheet = rows(4)
    describing = prompts.plan_describe(live, CHOICES, build_specs(sheet, live, "openai", "s"), sheet)
    at_live, at_batch = (prompts.estimate_writing(s, describing) for s in (live, batch))
    assert at_batch["usd"] == pytest.approx(at_live["usd"] * 0.5)
    assert "at the batch price" in prompts.describe_estimate(at_batch)


def test_a_writer_without_its_key_is_refused_before_any_call(env, tmp_path, monkeypatch):
    for name in ("AI_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    config = settings(tmp_path, provider="openai")
    gemini_images = Choices("gemini", "test", Destination("local", "results/bucket", ""))
    specs = build_specs(rows(1), config, "gemini", "s")
    with pytest.raises(UserError, match="set AI_API_KEY"):
        prompts.plan_describe(config, gemini_images, specs, rows(1))
    monkeypatch.setenv("AI_API_KEY", "sk-test")
    assert prompts.plan_describe(config, gemini_images, build_specs(rows(1), config, "gemini", "s"), rows(1))


def test_variants_share_their_rows_prompt_and_the_estimate_counts_it_once(env, tmp_path):
    """A row's variants ask for the same prompt: one call (the store's lock serves the others), so
    one prompt in the estimate; the offline writer's line names no model and no store."""
    config = settings(tmp_path)
    sheet = rows(4)
    specs = build_specs(sheet, dataclasses.replace(config, variants=3), "openai", "s")
    describing = prompts.plan_describe(config, CHOICES, specs, sheet)
    assert len(describing.pending) == 12
    assert prompts.estimate_writing(config, describing)["to_write"] == 4
    offline = {"prompts": 12, "to_write": 0, "writer": "offline", "model": MODEL, "usd": 0.0}
    line = prompts.describe_estimate(offline)
    assert line == "prompts: 12 written by the offline writer (no model called, no cost)"
