"""The model catalogue (config/models.yaml), the checks a run makes before any call, the cost of an
answer from its usage, the estimate before a run and the report after it."""

import datetime
import json

import pytest
import yaml

from image_batch.common.errors import UserError
from image_batch.costs import bill
from image_batch.costs.catalog import Catalog, formula_tokens, load_catalog
from image_batch.costs.estimate import describe, estimate
from tests.conftest import REPO
from tests.support import openai_models

CATALOG = load_catalog(REPO / "config" / "models.yaml")
TODAY = openai_models.TODAY  # the test clock: the stand-in's date, IMAGE_BATCH_TODAY for the workflow


def request(**fields):
    return {"provider": "openai", "model": "gpt-image-2.5-sunburst", "quality": "medium", "size": "1024x1024", **fields}


def test_the_shipped_catalogue_is_valid_and_dated():
    data = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
    assert str(data["checked"]) == "2026-11-27"
    for name, model in CATALOG.models.items():
        assert model.source, f"{name} has no source"
        if model.rates or model.per_image:
            assert model.price_source, f"{name}'s prices have no source"


def test_the_product_judges_models_on_the_real_date_unless_told_otherwise():
    from image_batch.costs import catalog

    real = datetime.datetime.now(datetime.UTC).date()
    assert catalog.today({}) == real and catalog.today({"IMAGE_BATCH_TODAY": ""}) == real
    assert catalog.today({"IMAGE_BATCH_TODAY": "2027-01-02"}) == datetime.date(2027, 1, 2)
    with pytest.raises(UserError, match="IMAGE_BATCH_TODAY"):
        catalog.today({"IMAGE_BATCH_TODAY": "tomorrow"})
    # a model's status with no date given is judged on that clock
    model = CATALOG.lookup("gpt-image-1.5")
    assert model.status() == model.status(catalog.today())


def test_the_shipped_settings_are_current_on_the_test_clock_for_the_catalogue_and_the_stand_in():
    """The shipped config's model and settings, on the date the workflow judges models (its clock,
    IMAGE_BATCH_TODAY = the stand-in's date): current with no shutdown in the catalogue, nothing to
    warn about, and answered by the stand-in, which models the real API on that date."""
    from image_batch.costs import catalog

    assert catalog.today() == TODAY
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["openai"]
    model = CATALOG.lookup(settings["model"])
    assert model is not None and model.status() == ("current", None)
    assert CATALOG.check({"provider": "openai", **settings}) == ([], [])
    answered = openai_models.check({"prompt": "a lake", **settings}, today=TODAY)
    assert answered.model.name == settings["model"] and answered.model.status(TODAY) == "current"


@pytest.mark.parametrize(
    "name, state",
    [
        ("gpt-image-1", "retired"),
        ("dall-e-2", "retired"),
        ("dall-e-3", "retired"),
        ("gpt-image-1-mini", "shutting-down"),
        ("gpt-image-1.5", "shutting-down"),
        ("gpt-image-1.5-2025-12-16", "shutting-down"),
        ("chatgpt-image-latest", "shutting-down"),
        ("gpt-image-2", "current"),
        ("gpt-image-2-2026-04-21", "current"),
        ("gpt-image-2.5-sunburst", "current"),
        ("gpt-image-2.5-flare-2026-09-08", "current"),
        ("gpt-image-2.6-sunburst", "current"),
        ("gpt-image-2.6-flare", "current"),
    ],
)
def test_statuses_on_2026_11_27(name, state):
    assert CATALOG.lookup(name).status(TODAY)[0] == state


def test_a_model_is_retired_from_its_shutdown_day():
    assert CATALOG.lookup("gpt-image-1.5").status(datetime.date(2026, 12, 1))[0] == "retired"
    assert CATALOG.lookup("gpt-image-1.5").status(datetime.date(2026, 11, 30)) == ("shutting-down", 1)


def problems(**fields):
    return CATALOG.check(request(**fields), TODAY)


def test_retired_model_is_refused_naming_the_fix():
    found, _ = problems(model="gpt-image-1")
    assert len(found) == 1 and "shut down on 2026-10-23" in found[0] and "gpt-image-2.6-sunburst" in found[0]


def test_model_shutting_down_within_30_days_is_a_warning():
    found, warnings = problems(model="gpt-image-1.5")
    assert not found and len(warnings) == 1 and "2026-12-01" in warnings[0] and "in 4 day(s)" in warnings[0]


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"model": "gpt-image-2", "quality": "xhigh"}, ["quality 'xhigh'", "low, medium, high, auto"]),
        ({"model": "gpt-image-2", "background": "transparent"}, ["background 'transparent'"]),
        ({"model": "gpt-image-1.5", "size": "2048x2048"}, ["size '2048x2048'"]),
        ({"size": "1000x1000"}, ["multiples of 16"]),
        # every limit is named, not only the one broken: the next try is right
        ({"size": "3840x1024"}, ["aspect ratio", "at most 3840 px, ratio within 3:1, 655,360 to 8,294,400 pixels"]),
        ({"size": "512x512"}, ["at least 655,360 pixels"]),
        ({"size": "3840x3840"}, ["at most 8,294,400 pixels"]),
        ({"size": "big"}, ["not WIDTHxHEIGHT"]),
        ({"complexity": "low"}, ["complexity is not taken"]),
        ({"model": "gpt-image-2.6-flare", "complexity": "extreme"}, ["complexity 'extreme'"]),
        ({"background": "transparent", "output_format": "jpeg"}, ["needs output_format png or webp"]),
    ],
)
def test_settings_a_model_does_not_take_are_refused(fields, words):
    found, _ = problems(**fields)
    assert found, fields
    for word in words:
        assert word in found[0]


def test_a_refusal_says_where_the_setting_was_made():
    def where(setting):
        return "given with --config" if setting == "quality" else "in my.yaml"

    found, _ = CATALOG.check(request(model="gpt-image-2", quality="xhigh", size="1000x1000"), TODAY, where)
    assert found[0].endswith("change openai.quality given with --config")
    assert "change openai.size in my.yaml" in found[1]  # where() answers per setting
    found, _ = CATALOG.check(request(model="gpt-image-2", quality="xhigh"), TODAY)
    assert found[0].endswith("change openai.quality in config/config.yaml")
    found, _ = CATALOG.check(request(model="gpt-image-1"), TODAY, lambda setting: f"set {setting} here")
    assert "set openai.model (set model here) to a current model" in found[0]


@pytest.mark.parametrize(
    "fields",
    [
        {"quality": "xhigh"},
        {"quality": "max", "size": "2048x1152"},
        {"model": "gpt-image-2.6-sunburst", "complexity": "medium", "quality": "max"},
        {"model": "gpt-image-2", "size": "3840x2160"},
        {"model": "gpt-image-2", "size": "auto", "background": "opaque"},
        {"model": "gpt-image-1-mini", "size": "1536x1024", "background": "transparent"},
    ],
)
def test_settings_a_model_takes_pass(fields):
    assert problems(**fields)[0] == []


def test_a_model_not_in_the_catalogue_is_used_unchecked_with_a_warning():
    found, warnings = problems(model="my-gateway-model", quality="ultra")
    assert found == [] and "not in the model catalogue" in warnings[0]


def test_gpt_image_2_tokens_follow_openais_calculator():
    # figures published with the calculator and seen in real usage
    assert formula_tokens(96, 1024, 1024) == 7024
    assert formula_tokens(16, 1024, 1024) == 196
    assert formula_tokens(96, 1536, 1024) == 5488
    assert formula_tokens(96, 3840, 2160) == 13342
    assert CATALOG.typical_output_tokens("gpt-image-2", "medium", "1024x1024") == (
        1756,
        "typical tokens of gpt-image-2 (gpt-image-2 rule)",
    )
    assert CATALOG.typical_output_tokens("gpt-image-1-mini", "high", "1024x1536")[0] == 6240
    tokens, why = CATALOG.typical_output_tokens("gpt-image-2.5-sunburst", "xhigh", "1024x1024")
    assert tokens is None and "xhigh" in why


def usage(text_in, image_out, text_out=0, details=True):
    out = {"input_tokens": text_in, "input_tokens_details": {"text_tokens": text_in, "image_tokens": 0}}
    out["output_tokens"] = image_out + text_out
    if details:
        out["output_tokens_details"] = {"image_tokens": image_out, "text_tokens": text_out}
    out["total_tokens"] = text_in + image_out + text_out
    return out


def test_answer_cost_at_list_prices_live_and_batch():
    live = bill.answer_cost(CATALOG, "gpt-image-2.5-sunburst", usage(40, 1756))
    assert live["usd"] == pytest.approx((40 * 5.00 + 1756 * 30.00) / 1e6)
    assert live["price"] == "live" and live["basis"] == "usage" and live["tokens"]["image_output"] == 1756
    batch = bill.answer_cost(CATALOG, "gpt-image-2.5-sunburst", usage(40, 1756), "batch")
    assert batch["usd"] == pytest.approx(live["usd"] / 2) and batch["price"] == "batch"


def test_text_output_is_priced_apart_and_unpriced_when_no_price_is_listed():
    cost = bill.answer_cost(CATALOG, "gpt-image-2", usage(10, 1000, text_out=100))
    assert cost["usd"] == pytest.approx((10 * 5 + 1000 * 30 + 100 * 10) / 1e6)
    # gpt-image-2.6's page lists no text-output price: such an answer is unpriced, not guessed
    cost = bill.answer_cost(CATALOG, "gpt-image-2.6-sunburst", usage(10, 1000, text_out=100))
    assert cost["usd"] is None and "text_output" in cost["why"]
    assert bill.answer_cost(CATALOG, "gpt-image-2.6-sunburst", usage(10, 1000))["usd"] is not None


def test_output_without_details_is_priced_as_image_tokens():
    cost = bill.answer_cost(CATALOG, "gpt-image-2", usage(10, 1000, details=False))
    assert cost["usd"] == pytest.approx((10 * 5 + 1000 * 30) / 1e6)


def test_unknown_model_is_unpriced():
    assert bill.answer_cost(CATALOG, "other-model", usage(1, 1))["usd"] is None


def spec(i, prompt=None, **fields):
    prompt = prompt or f"{i:02d}" + "x" * 38  # each row its own request, of 40 characters
    return {"image_id": f"i{i}", "folder": "a", "context": "A", "request": {**request(**fields), "prompt": prompt}}


def test_estimate_from_the_catalogues_typical_tokens_says_so():
    specs = [spec(i) for i in range(4)]
    e = estimate(specs, CATALOG, lambda s: True, lambda r: False)
    each = (10 * 5.00 + 1756 * 30.00) / 1e6  # 40 characters ~ 10 text tokens; gpt-image-2 medium 1024x1024
    assert e["to_pay"] == 4 and e["live"] == pytest.approx(4 * each) and e["batch"] == pytest.approx(2 * each)
    text = "\n".join(describe(e))
    assert "typical tokens" in text and "assumed" in text


def test_estimate_from_your_own_answers_wins():
    means = {("gpt-image-2.5-sunburst", "medium", "1024x1024"): {"n": 3, "output_tokens": 1000.0}}
    e = estimate([spec(0)], CATALOG, lambda s: True, lambda r: False, means)
    assert e["live"] == pytest.approx((10 * 5 + 1000 * 30) / 1e6)
    assert "your 3 stored answer(s)" in "\n".join(describe(e))


def test_estimate_never_prices_one_quality_as_another():
    e = estimate([spec(0, quality="xhigh"), spec(1)], CATALOG, lambda s: True, lambda r: False)
    assert e["unpriced"] == 1 and e["to_pay"] == 2
    assert e["live"] == pytest.approx((10 * 5 + 1756 * 30) / 1e6)
    assert "unpriced" in "\n".join(describe(e))


def test_estimate_uses_published_per_image_prices():
    e = estimate([spec(0, model="gpt-image-1-mini", quality="high")], CATALOG, lambda s: True, lambda r: False)
    assert e["live"] == pytest.approx(0.036)


def test_estimate_counts_images_in_the_store_as_free():
    specs = [spec(0), spec(1), spec(2)]
    e = estimate(specs, CATALOG, lambda s: s["image_id"] != "i2", lambda r: r is specs[0]["request"])
    assert (e["images"], e["to_make"], e["from_store"], e["to_pay"]) == (3, 2, 1, 1)


def test_rows_sharing_a_request_are_one_to_pay_for():
    """Three rows with the same request: one call, so one to pay for (and the rest is said plainly)."""
    specs = [spec(i, prompt="s" * 40) for i in range(3)] + [spec(3)]
    e = estimate(specs, CATALOG, lambda s: True, lambda r: False)
    assert (e["to_make"], e["to_pay"], e["shared"]) == (4, 2, 2)
    alone = estimate(specs[3:], CATALOG, lambda s: True, lambda r: False)
    assert e["live"] == pytest.approx(2 * alone["live"]) and e["batch"] == pytest.approx(2 * alone["batch"])
    assert "2 to pay for" in describe(e)[0] and "2 more row(s) share a request" in describe(e)[0]
    # a request a batch recorded earlier covers is collected, not paid for again
    covered = estimate(specs, CATALOG, lambda s: True, lambda r: False, in_batch=lambda r: r is specs[3]["request"])
    assert (covered["to_pay"], covered["in_batch"]) == (1, 1) and "1 request(s) are in batches" in describe(covered)[0]
    # what collecting it costs: billed once, at the batch price (the run's summary compares with it)
    assert covered["in_batch_usd"] == pytest.approx(alone["batch"])
    assert covered["batch"] == pytest.approx(alone["batch"])


def test_report_counts_an_answer_shared_by_rows_once():
    """Rows made from one answer (the same request id) cost that answer once, in the first context."""
    one = {"provider": "openai", "request_id": "req_1", "cost": {"usd": 0.04, "price": "live"}}
    sidecars = [
        {**one, "context": "B", "image_id": "b1"},
        {**one, "context": "A", "image_id": "a2"},
        {**one, "context": "A", "image_id": "a1"},
        {"context": "B", "image_id": "b2", "provider": "openai", "request_id": "req_2", "cost": {"usd": 0.02}},
    ]
    r = bill.report(sidecars)
    assert r["total"] == pytest.approx(0.06) and r["images"] == 4 and r["shared"] == 2
    assert r["per_context"]["A"]["cost"] == pytest.approx(0.04) and r["per_context"]["B"]["cost"] == pytest.approx(0.02)
    assert "2 made from another row's answer (paid once)" in bill.describe_report(r)


def test_ledger_counts_a_request_paid_once(tmp_path, monkeypatch):
    from image_batch.run import ledger

    path = tmp_path / "run.jsonl"
    monkeypatch.setenv(ledger.VARIABLE, str(path))
    for image in ("a", "b", "c"):  # batch mode: three rows made from the answer the run's batch bought
        ledger.record("f", image, ledger.PAID, 0.02, "batch", key="k1")
    ledger.record("f", "d", ledger.PAID, 0.04, "live", key="k2")
    counts = ledger.Reader(path).read().counts()
    assert (counts[ledger.PAID], counts[ledger.STORE]) == (2, 2) and counts["usd"] == pytest.approx(0.06)


def test_report_adds_up_what_each_sidecar_recorded():
    sidecars = [
        {"context": "A", "provider": "openai", "cost": {"usd": 0.05, "price": "live"}},
        {"context": "A", "provider": "openai", "cost": {"usd": 0.025, "price": "batch"}},
        {"context": "B", "provider": "openai", "cost": {"usd": None, "price": "live"}},
        {"context": "B", "provider": "offline"},
    ]
    r = bill.report(sidecars)
    assert r["total"] == pytest.approx(0.075) and r["images"] == 4 and r["unpriced"] == 1
    assert r["batch_images"] == 1 and r["per_context"]["A"]["cost"] == pytest.approx(0.075)
    assert "$0.07" in bill.describe_report(r) or "$0.08" in bill.describe_report(r)


def test_a_broken_catalogue_is_a_clear_error(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("checked: 2026-11-27\nproviders: {}\nmodels: {m: {qualities: low}}\n")
    with pytest.raises(UserError, match="not valid at models.m.qualities"):
        load_catalog(path)
    path.write_text("{{{")
    with pytest.raises(UserError, match="cannot read the model catalogue"):
        load_catalog(path)


def test_same_as_inherits_and_overrides():
    data = {"checked": "2026-11-27", "providers": {}, "models": {"a": {"qualities": ["low"], "source": "s"}}}
    data["models"]["b"] = {"same_as": "a", "source": "t"}
    catalog = Catalog(json.loads(json.dumps(data)))
    assert catalog.lookup("b").qualities == ("low",) and catalog.lookup("b").source == "t"


@pytest.mark.parametrize(
    "name, refused, guess",
    [
        ("gpt-image-2.5-sunbrust", True, "'gpt-image-2.5-sunburst'"),  # a typo: refused, with the fix
        ("gpt-imag-2", True, "'gpt-image-2'"),
        ("gpt-image-3", False, "'gpt-image-2'"),  # another number: maybe a new model, so only a warning
        ("my-own-model", False, None),  # a gateway's own model: unknown, unpriced, not refused
    ],
)
def test_a_misspelled_model_gets_a_did_you_mean(name, refused, guess):
    problems, warnings = CATALOG.check(request(model=name), TODAY)
    said = problems if refused else warnings
    assert len(said) == 1 and (problems == []) != refused
    assert ("did you mean" in said[0]) == (guess is not None) and (guess is None or guess in said[0])
