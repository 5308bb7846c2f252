"""What a run will cost, before it starts, and how sure that figure is.

For each model, quality and size among the images to pay for, the price of one image comes from,
in this order: the mean ``usage`` of your own answers already in the response store for the same
model, quality and size (your own bills); the per-image price the provider publishes; the
catalogue's typical output tokens. With none of these the images are reported as unpriced: never
priced as another quality or size.
"""

import json
import math
from collections import defaultdict

from image_batch.costs.bill import answer_cost, money

# Text tokens of a prompt, for estimates only (the bill uses the answer's own count).
CHARS_PER_TOKEN = 4


def _usage(text_tokens, image_tokens):
    return {
        "input_tokens": text_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens": image_tokens,
        "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0},
    }


def price_one(catalog, model, quality, size, prompt_chars, own):
    """(USD for one image or None, basis, note)."""
    text_tokens = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    if own and own.get("output_tokens") is not None:
        out = own.get("image_output_tokens", own["output_tokens"])
        text_in = own.get("text_input_tokens", text_tokens)
        cost = answer_cost(catalog, model, _usage(round(text_in), round(out)))
        if cost["usd"] is not None:
            return cost["usd"], "own", f"from the mean usage of your {own['n']} stored answer(s) for these settings"
    per_image = catalog.per_image_price(model, quality, size)
    if per_image is not None:
        return per_image, "per_image", f"at the list price per image ({catalog.lookup(model).price_source})"
    tokens, note = catalog.typical_output_tokens(model, quality, size)
    if tokens is None:
        return None, "unpriced", note
    cost = answer_cost(catalog, model, _usage(text_tokens, tokens))
    if cost["usd"] is None:
        return None, "unpriced", cost.get("why", "no price")
    return cost["usd"], "typical", f"from the catalogue's {note}: about {tokens:,} output tokens each"


def _paid(request, known={}):  # noqa: B006 (a memo: a handful of providers, many rows)
    """Whether ``request``'s provider bills it (per-row settings may put an offline row among paid ones)."""
    name = request.get("provider") or "openai"
    if name not in known:
        from image_batch.providers import provider_class

        known[name] = provider_class(name).paid
    return known[name]


def estimate(specs, catalog, to_make, in_store, usage_means=None, paid=True, in_batch=None):
    """Images to make, how many the response store already has, and the estimated bill live and in
    batch mode for the rest. ``to_make(spec)`` and ``in_store(request)`` are predicates;
    ``usage_means`` is the store's {(model, quality, size): mean usage}; ``in_batch(request)`` says
    whether a batch recorded earlier covers the request (it is collected, not paid again; what the
    Batch API bills for it, once, is ``in_batch_usd``). Rows that share a request share one answer:
    each request is counted once (``to_pay``)."""
    out = {"images": len(specs), "to_make": 0, "from_store": 0, "to_pay": 0, "live": 0.0, "batch": 0.0}
    out["unpriced"], out["groups"], out["shared"], out["in_batch"], out["in_batch_usd"] = 0, [], 0, 0, 0.0
    groups, batched = defaultdict(list), defaultdict(list)
    seen = set()
    for spec in specs:
        if not to_make(spec):
            continue
        out["to_make"] += 1
        request = spec["request"]
        if not paid or not _paid(request):  # a placeholder (a row whose provider cell is offline): no cost
            continue
        if in_store(request):
            out["from_store"] += 1
            continue
        key = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # (C-encoded: one per row)
        if key in seen:  # another row to make asks the very same: it is served that row's answer
            out["shared"] += 1
            continue
        seen.add(key)
        size = request.get("size") or request.get("image_size")  # Gemini names its size image_size
        if in_batch is not None and in_batch(request):
            out["in_batch"] += 1
            batched[(request.get("model"), request.get("quality"), size)].append(len(request["prompt"]))
            continue
        out["to_pay"] += 1
        if request.get("references"):  # an edit request: its input pictures are billed too
            out["edits"] = out.get("edits", 0) + 1
        groups[(request.get("model"), request.get("quality"), size)].append(len(request["prompt"]))
    means = usage_means or {}
    for (model, quality, size), lengths in batched.items():  # billed once, at the batch price
        each = price_one(catalog, model, quality, size, sum(lengths) / len(lengths), means.get((model, quality, size)))
        if each[0] is not None:
            out["in_batch_usd"] += each[0] * len(lengths) * _discount(catalog, model)
    out["in_batch_usd"] = round(out["in_batch_usd"], 6)
    for (model, quality, size), lengths in sorted(groups.items(), key=lambda item: str(item[0])):
        chars = sum(lengths) / len(lengths)
        each, basis, note = price_one(catalog, model, quality, size, chars, means.get((model, quality, size)))
        discount = _discount(catalog, model)
        group = {"model": model, "quality": quality, "size": size, "images": len(lengths), "basis": basis}
        group.update(note=note, each=each)
        out["groups"].append(group)
        if each is None:
            out["unpriced"] += len(lengths)
            continue
        out["live"] += each * len(lengths)
        out["batch"] += each * len(lengths) * discount
    out["live"], out["batch"] = round(out["live"], 6), round(out["batch"], 6)
    return out


def _discount(catalog, model):
    entry = catalog.lookup(model)
    return catalog.batch_discount(entry.provider) if entry else 0.5


def money_each(usd):
    """The price of one image, precise enough that N of them add up to the total shown ($0.053,
    not $0.05 beside a total of $0.11)."""
    return f"${usd:.3f}" if 0.01 <= abs(usd) < 10 else money(usd)


def describe(e, paid=True):
    """The estimate as lines for the log: the totals, then how each price was found."""
    if not paid:
        return [f"estimate: {e['to_make']} of {e['images']} image(s) to make, with the offline generator: no cost"]
    text = (
        f"estimate: {e['to_make']} of {e['images']} image(s) to make, {e['from_store']} of them served "
        f"from the response store (no cost), {e['to_pay']} to pay for: "
    )
    if e["unpriced"] and e["unpriced"] >= e["to_pay"]:
        # nothing priced: "about $0.00 live ... plus 6 unpriced" read as free
        text += "no price known for any of them (see below)"
    else:
        text += f"about {money(e['live'])} live, {money(e['batch'])} in batch mode"
        if e["unpriced"]:
            text += f", plus {e['unpriced']} unpriced"
    if e.get("shared"):
        text += f"; {e['shared']} more row(s) share a request with another row (one answer, paid once)"
    if e.get("in_batch"):
        text += (
            f"; {e['in_batch']} request(s) are in batches submitted earlier: collected when they end, not paid again"
        )
        if e.get("in_batch_usd"):
            text += f" (about {money(e['in_batch_usd'])} at the batch price, billed once by the Batch API)"
    lines = [text]
    if e.get("edits"):
        lines.append(
            f"  {e['edits']} of them are edit requests: input images not priced (the catalogue gives no token "
            "count for input pictures); their bills count them from each answer's usage"
        )
    for g in e["groups"]:
        head = f"  {g['images']} x {g['model']} {g['quality'] or 'default quality'} {g['size'] or 'default size'}"
        if g["each"] is None:
            lines.append(f"{head}: unpriced ({g['note']})")
        else:
            lines.append(f"{head} at about {money_each(g['each'])} each, {g['note']}")
    return lines
