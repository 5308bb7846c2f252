"""The response store: every successful paid API answer, kept as received, keyed by its request.

``<root>/<key[:2]>/<key>.json`` where ``key`` is the SHA-256 of the canonical JSON of the full
request (provider, endpoint, model, prompt, size, quality, output format, background, extra body,
variant). An answer is written atomically the moment it arrives, before it is decoded or checked,
so a crash afterwards loses nothing that was paid for. Every generation looks here first. It lives
outside results/ (config ``response_store``), so ``rm -rf results`` costs nothing to redo.

A per-key lock (flock) makes concurrent jobs with the same request wait for one another instead of
paying twice. Answers that turn out unusable are moved to ``<root>/rejected/``.
"""

import base64
import datetime
import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from .fileio import atomic_write_bytes


DEFAULT_ROOT = "response-store"


def store_root(config):
    """Where the response store lives: config ``response_store``, else ``response-store``."""
    return config.get("response_store") or DEFAULT_ROOT


def request_key(request):
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseStore:
    def __init__(self, root):
        self.root = Path(root)

    def path(self, key):
        return self.root / key[:2] / f"{key}.json"

    @contextmanager
    def lock(self, key):
        path = self.root / key[:2] / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, key):
        """The stored entry for ``key`` or None.  Entries carry ``body`` (bytes) and ``headers``."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            self.reject(key, "unreadable store entry")
            return None
        entry["body"] = base64.b64decode(entry.pop("body_b64")) if "body_b64" in entry else entry["body"].encode()
        if entry.get("attachment_b64"):
            entry["attachment"] = base64.b64decode(entry.pop("attachment_b64"))
        return entry

    def put(self, key, request, raw):
        """Keep ``raw`` (a providers.RawResponse) for ``request``: atomically, right away."""
        entry = {
            "key": key,
            "request": request,
            "received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "status": raw.status,
            "headers": raw.headers,
        }
        try:
            entry["body"] = raw.body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_b64"] = base64.b64encode(raw.body).decode("ascii")
        if raw.attachment is not None:
            entry["attachment_b64"] = base64.b64encode(raw.attachment).decode("ascii")
        atomic_write_bytes(self.path(key), json.dumps(entry, ensure_ascii=False).encode("utf-8"))

    def reject(self, key, reason):
        """Move an unusable entry aside (kept for inspection), so the next look-up misses."""
        source = self.path(key)
        if not source.exists():
            return
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        target = self.root / "rejected" / f"{key}-{stamp}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        (target.with_suffix(".reason.txt")).write_text(reason + "\n", encoding="utf-8")
