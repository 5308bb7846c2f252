"""The price table, the pre-run estimate and the cost report after a run."""

import json

import pytest

from image_batch.costs import cost

PRICES = {
    "batch_discount": 0.5,
    "models": {
        "m-img": {
            "per_image": {"low": {"1024x1024": 0.01}, "medium": {"1024x1024": 0.04, "1024x1536": 0.06}},
            "per_million_tokens": {"text_input": 5.0, "image_input": 10.0, "image_output": 40.0},
        },
        "flat": {"per_image": {"medium": {"1024x1024": 0.02}}},
    },
}


def spec(i, model="m-img", quality="medium", size="1024x1024", context="A"):
    return {
        "image_id": f"i{i}",
        "context": context,
        "request": {"provider": "openai", "model": model, "quality": quality, "size": size, "prompt": f"p{i}"},
    }


def test_image_price_by_model_quality_and_size():
    assert cost.image_price(spec(0)["request"], PRICES) == 0.04
    assert cost.image_price(spec(0, size="1024x1536")["request"], PRICES) == 0.06
    assert cost.image_price(spec(0, quality="low")["request"], PRICES) == 0.01
    assert cost.image_price(spec(0, model="unknown")["request"], PRICES) is None


def test_estimate_counts_what_is_made_what_the_store_serves_and_both_prices():
    specs = [spec(i) for i in range(6)] + [spec(9, model="unknown")]
    made = {"i0"}  # already there
    stored = {"p1", "p2"}  # answers already paid for
    e = cost.estimate(specs, PRICES, lambda s: s["image_id"] not in made, lambda r: r["prompt"] in stored)
    assert (e["images"], e["to_make"], e["from_store"], e["to_pay"], e["unpriced"]) == (7, 6, 2, 4, 1)
    assert e["live"] == pytest.approx(3 * 0.04) and e["batch"] == pytest.approx(3 * 0.02)
    text = cost.describe_estimate(e)
    assert "6 of 7 image(s) to make" in text and "$0.12 live" in text and "$0.06 in batch mode" in text
    assert "no cost" in cost.describe_estimate(e, paid=False)


def test_report_from_usage_per_context_with_batch_discount():
    usage = {"input_tokens": 10, "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}, "output_tokens": 1000}
    per_answer = (10 * 5.0 + 1000 * 40.0) / 1e6
    sidecars = [
        {"context": "A", "provider": "openai", "model": "m-img", "usage": usage, "request_id": "r1"},
        {"context": "A", "provider": "openai", "model": "m-img", "usage": usage, "request_id": "r2"},
        {
            "context": "B",
            "provider": "openai",
            "model": "flat",
            "quality": "medium",
            "size": "1024x1024",
            "usage": None,
            "request_id": "r3",
        },
        {"context": "B", "provider": "openai", "model": "nope", "usage": usage, "request_id": "r4"},
        {"context": "C", "provider": "offline", "model": "offline-card"},
    ]
    r = cost.report(sidecars, PRICES, batch_request_ids=["r2"])
    assert r["per_context"]["A"]["cost"] == pytest.approx(per_answer * 1.5)
    assert r["per_context"]["B"] == {"images": 2, "cost": 0.02, "unpriced": 1, "batch": 0}
    assert r["per_context"]["C"]["cost"] == 0
    assert r["total"] == pytest.approx(per_answer * 1.5 + 0.02)
    assert (r["images"], r["unpriced"], r["batch_images"]) == (5, 1, 1)
    assert "A: $" in cost.describe_report(r) and json.dumps(r)
