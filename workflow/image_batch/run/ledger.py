"""The run's ledger: one line per image job of a real run (made and paid, served from the response
store, placeholder, failed; and what it cost), appended by the jobs as they end. The progress
line and the end-of-run summary read it. Its path reaches the jobs (threads, the image worker)
through the environment variable :data:`VARIABLE`, set when the run starts."""

import json
import os
import time
from pathlib import Path

VARIABLE = "IMAGE_BATCH_LEDGER"
RUNS = Path("results/logs/runs")

PAID, STORE, OFFLINE, FAILED = "paid", "store", "offline", "failed"
PROMPT = "prompt"  # a prompt written by a model and paid for in this run (describe:)
CATALOG_VARIABLE = "IMAGE_BATCH_CATALOG"  # the model catalogue that prices prompts (set with VARIABLE)


def path_for(run_id):
    return RUNS / f"{run_id}.jsonl"


def record(folder, image_id, outcome, usd=None, price=None, key=None):
    """Append one image's outcome to the current run's ledger (nothing outside a real run). ``key``
    is the request's store key: rows sharing a request share one answer, paid once."""
    target = os.environ.get(VARIABLE)
    if not target:
        return
    entry = {"image": f"{folder}/{image_id}", "outcome": outcome, "usd": usd, "price": price}
    if key:
        entry["key"] = key
    line = json.dumps({**entry, "t": round(time.time(), 3)})
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))  # one write per line: lines never interleave
    finally:
        os.close(fd)


def record_prompt(request, usage, origin="live"):
    """Append one prompt paid for in this run (``describe:``) and its cost to the run's ledger."""
    target = os.environ.get(VARIABLE)
    if not target:
        return
    from image_batch.costs.catalog import load_catalog
    from image_batch.descriptions.prompts import text_cost
    from image_batch.images.store import request_key

    catalog_path = os.environ.get(CATALOG_VARIABLE)
    usd = text_cost(load_catalog(catalog_path), request["model"], usage, origin)["usd"] if catalog_path else None
    key = request_key(request)
    entry = {"image": f"prompt:{key}", "outcome": PROMPT, "usd": usd, "key": key}
    line = json.dumps({**entry, "t": round(time.time(), 3)})
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


class Reader:
    """Reads a ledger as it grows (the progress thread calls :meth:`read` every few seconds)."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""
        self.entries = {}  # image -> last entry (a retried job's last word counts)

    def read(self):
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return self
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.entries[entry.get("image")] = entry
        return self

    def counts(self):
        """Images by outcome, and what was paid: each request once (``paid`` = distinct requests
        paid for; another row made from the same answer counts as served from the store)."""
        out = {PAID: 0, STORE: 0, OFFLINE: 0, FAILED: 0, "usd": 0.0, "unpriced": 0, PROMPT: 0, "prompt_usd": 0.0}
        paid_keys = set()
        for entry in self.entries.values():
            outcome = entry["outcome"]
            if outcome == PROMPT:
                out[PROMPT] += 1
                out["prompt_usd"] += float(entry.get("usd") or 0.0)
                continue
            if outcome == PAID and entry.get("key"):
                if entry["key"] in paid_keys:
                    outcome = STORE
                paid_keys.add(entry["key"])
            out[outcome] = out.get(outcome, 0) + 1
            if outcome == PAID:
                if entry.get("usd") is None:
                    out["unpriced"] += 1
                else:
                    out["usd"] += float(entry["usd"])
        return out
