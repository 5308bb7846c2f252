"""What a run will cost before it starts, and what it cost after, from the price table in config.

``prices.models.<model>`` gives ``per_image`` prices by quality and size (used for estimates, and
for answers without usage) and, for token-priced models, ``per_million_tokens`` (text_input,
image_input, image_output), used with each answer's ``usage``. Batch mode pays
``prices.batch_discount`` of that (0.5: half). A model missing from the table is reported as
unpriced rather than guessed.
"""

import json
from collections import defaultdict
from pathlib import Path


def _model_prices(prices, model):
    return ((prices or {}).get("models") or {}).get(model) or {}


def image_price(request, prices):
    """The list price of one image for ``request`` (model, quality, size), or None if unknown."""
    table = _model_prices(prices, request.get("model")).get("per_image") or {}
    by_size = table.get(request.get("quality") or "auto") or table.get("medium") or {}
    value = by_size.get(request.get("size") or "auto", by_size.get("1024x1024"))
    return float(value) if value is not None else None


def usage_price(usage, model, prices):
    """The price of one answer from its ``usage`` (token-priced models), or None."""
    rates = _model_prices(prices, model).get("per_million_tokens")
    if not rates or not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    text_in = details.get("text_tokens", usage.get("input_tokens", 0) - details.get("image_tokens", 0))
    image_in = details.get("image_tokens", 0)
    out = usage.get("output_tokens", 0)
    return (
        text_in * rates.get("text_input", 0)
        + image_in * rates.get("image_input", 0)
        + out * rates.get("image_output", 0)
    ) / 1_000_000


def estimate(specs, prices, needs_image, in_store):
    """Images to make, how many the response store already has, and the estimated bill live and in
    batch mode for the rest.  ``needs_image(spec)`` and ``in_store(request)`` are predicates."""
    discount = float((prices or {}).get("batch_discount", 0.5))
    out = {"images": len(specs), "to_make": 0, "from_store": 0, "to_pay": 0, "live": 0.0, "batch": 0.0, "unpriced": 0}
    for spec in specs:
        if not needs_image(spec):
            continue
        out["to_make"] += 1
        request = spec["request"]
        if in_store(request):
            out["from_store"] += 1
            continue
        out["to_pay"] += 1
        price = image_price(request, prices)
        if price is None:
            out["unpriced"] += 1
        else:
            out["live"] += price
            out["batch"] += price * discount
    return out


def describe_estimate(e, paid=True):
    if not paid:
        return f"estimate: {e['to_make']} of {e['images']} image(s) to make, with the offline generator: no cost"
    text = (
        f"estimate: {e['to_make']} of {e['images']} image(s) to make, {e['from_store']} of them served "
        f"from the response store (no cost), {e['to_pay']} to pay for: about ${e['live']:,.2f} live, "
        f"${e['batch']:,.2f} in batch mode"
    )
    if e["unpriced"]:
        text += f" (+{e['unpriced']} with no price in config prices.models)"
    return text


def report(sidecars, prices, batch_request_ids=()):
    """The cost of the images whose sidecars are given, per context and in total, from each answer's
    usage (or the per-image price when there is none)."""
    discount = float((prices or {}).get("batch_discount", 0.5))
    batch_ids = set(batch_request_ids)
    per_context = defaultdict(lambda: {"images": 0, "cost": 0.0, "unpriced": 0, "batch": 0})
    for sidecar in sidecars:
        row = per_context[sidecar.get("context", "")]
        row["images"] += 1
        if sidecar.get("provider") != "openai":
            continue  # the offline generator costs nothing
        price = usage_price(sidecar.get("usage"), sidecar.get("model"), prices)
        if price is None:
            price = image_price(
                {"model": sidecar.get("model"), "quality": sidecar.get("quality"), "size": sidecar.get("size")}, prices
            )
        if price is None:
            row["unpriced"] += 1
            continue
        if sidecar.get("request_id") in batch_ids:
            row["batch"] += 1
            price *= discount
        row["cost"] += price
    contexts = {name: {**row, "cost": round(row["cost"], 6)} for name, row in sorted(per_context.items())}
    return {
        "currency": "USD",
        "total": round(sum(r["cost"] for r in contexts.values()), 6),
        "images": sum(r["images"] for r in contexts.values()),
        "unpriced": sum(r["unpriced"] for r in contexts.values()),
        "batch_images": sum(r["batch"] for r in contexts.values()),
        "per_context": contexts,
    }


def report_for_files(paths, prices, batch_done="results/batch/done.json"):
    """:func:`report` over the sidecars among ``paths`` (the synced files)."""
    try:
        batch_ids = json.loads(Path(batch_done).read_text(encoding="utf-8")).get("request_ids", [])
    except (FileNotFoundError, ValueError):
        batch_ids = []
    sidecars = (json.loads(Path(p).read_text(encoding="utf-8")) for p in paths if str(p).endswith(".json"))
    return report(sidecars, prices, batch_ids)


def describe_report(r):
    lines = [
        f"cost: ${r['total']:,.2f} for {r['images']} image(s)"
        + (f" ({r['batch_images']} at the batch price)" if r["batch_images"] else "")
        + (f"; {r['unpriced']} with no price in config" if r["unpriced"] else "")
    ]
    for name, row in r["per_context"].items():
        lines.append(f"  {name}: ${row['cost']:,.2f} for {row['images']} image(s)")
    return "\n".join(lines)
