"""What each answer cost, and what a set of images cost: from each answer's ``usage`` and the list
prices of the model catalogue, at the batch price for answers that came through the Batch API.

Each image's sidecar records its own cost (:func:`answer_cost`), so that no later run, rebuild or
``rm -rf results`` loses what was paid or at which price; markers and logs add sidecars up
(:func:`report`).
"""

from collections import defaultdict

UNPRICED = "unpriced"


def _tokens(usage):
    """Token counts of an answer's usage, by what they are billed as."""
    usage = usage or {}
    details_in = usage.get("input_tokens_details") or {}
    details_out = usage.get("output_tokens_details")
    image_in = int(details_in.get("image_tokens") or 0)
    text_in = details_in.get("text_tokens")
    text_in = int(text_in) if text_in is not None else max(int(usage.get("input_tokens") or 0) - image_in, 0)
    cached = int(details_in.get("cached_tokens") or 0)
    cached_image = int((details_in.get("cached_tokens_details") or {}).get("image_tokens") or 0)
    cached_text = max(cached - cached_image, 0)
    out = int(usage.get("output_tokens") or 0)
    if details_out:  # image and text output are priced apart
        image_out = int(details_out.get("image_tokens") or 0)
        text_out = int(details_out.get("text_tokens") or 0)
    else:  # no split given: an image answer's output is image tokens
        image_out, text_out = out, 0
    return {
        "text_input": max(text_in - cached_text, 0),
        "cached_text_input": cached_text,
        "image_input": max(image_in - cached_image, 0),
        "cached_image_input": cached_image,
        "image_output": image_out,
        "text_output": text_out,
    }


def answer_cost(catalog, model, usage, origin="live", quality=None, size=None):
    """The cost of one answer: {"usd", "price" (live/batch), "basis", "tokens", "source"}; "usd" is
    None (and "why" says why) when the catalogue has no price for it. Never a guess: a token
    count with no price, or a model the catalogue does not know, leaves it unpriced."""
    batch = origin == "batch"
    entry = catalog.lookup(model)
    result = {"price": "batch" if batch else "live", "model": model}
    if entry is None:
        return {**result, "usd": None, "why": f"model {model!r} is not in the model catalogue"}
    discount = catalog.batch_discount(entry.provider) if batch else 1.0
    if usage and entry.rates:
        tokens = _tokens(usage)
        usd = 0.0
        for kind, count in tokens.items():
            if not count:
                continue
            rate = entry.rates.get(kind)
            if rate is None and kind.startswith("cached_"):
                rate = entry.rates.get(kind[len("cached_") :])  # no cached price listed: the full one
            if rate is None:
                return {**result, "usd": None, "tokens": tokens, "why": f"no {kind} price for {entry.name}"}
            usd += count * rate / 1_000_000
        return {
            **result,
            "usd": round(usd * discount, 8),
            "basis": "usage",
            "tokens": tokens,
            "source": entry.price_source,
        }
    per_image = catalog.per_image_price(model, quality, size)
    if per_image is not None:
        return {**result, "usd": round(per_image * discount, 8), "basis": "per_image", "source": entry.price_source}
    return {**result, "usd": None, "why": f"no usage in the answer and no per-image price for {model} {quality} {size}"}


def report(sidecars):
    """The cost of the images whose sidecars are given, per context and in total, from the cost
    each sidecar records (offline placeholders cost nothing). Rows that share a request are made
    from one answer (the same ``request_id`` in their sidecars), paid once: its cost is counted
    once, for the first of them by context and image id; the others count as ``shared``."""
    per_context = defaultdict(lambda: {"images": 0, "cost": 0.0, "unpriced": 0, "batch": 0, "shared": 0})
    seen = set()
    for sidecar in sorted(sidecars, key=lambda s: (str(s.get("context", "")), str(s.get("image_id", "")))):
        row = per_context[sidecar.get("context", "")]
        row["images"] += 1
        cost = sidecar.get("cost")
        if cost is None:
            if sidecar.get("provider") == "offline":
                continue
            row["unpriced"] += 1
            continue
        answer = sidecar.get("request_id")
        if answer:
            if answer in seen:
                row["shared"] += 1
                continue
            seen.add(answer)
        if cost.get("usd") is None:
            row["unpriced"] += 1
            continue
        if cost.get("price") == "batch":
            row["batch"] += 1
        row["cost"] += float(cost["usd"])
    contexts = {name: {**row, "cost": round(row["cost"], 6)} for name, row in sorted(per_context.items())}
    return {
        "currency": "USD",
        "total": round(sum(r["cost"] for r in per_context.values()), 6),
        "images": sum(r["images"] for r in contexts.values()),
        "unpriced": sum(r["unpriced"] for r in contexts.values()),
        "batch_images": sum(r["batch"] for r in contexts.values()),
        "shared": sum(r["shared"] for r in contexts.values()),
        "per_context": contexts,
    }


def money(usd):
    """$1,234.56, or $0.0123 for amounts under a cent."""
    if usd and abs(usd) < 0.01:
        return f"${usd:.4f}"
    return f"${usd:,.2f}"


def describe_report(r):
    lines = [
        f"cost: {money(r['total'])} for {r['images']} image(s)"
        + (f" ({r['batch_images']} at the batch price)" if r["batch_images"] else "")
        + (f"; {r['unpriced']} unpriced (not in the model catalogue)" if r["unpriced"] else "")
        + (f"; {r['shared']} made from another row's answer (paid once)" if r.get("shared") else "")
    ]
    for name, row in r["per_context"].items():
        lines.append(f"  {name}: {money(row['cost'])} for {row['images']} image(s)")
    return "\n".join(lines)
