"""Batch mode for the gemini provider: Google's Batch API (half the price), with the guarantees of
OpenAI's batch mode (images.batch): exactly the requests with no stored answer are submitted, split at
the API's limits; every batch is recorded (fsynced) before and after it is created, so a run stopped
while waiting (even ``kill -9``) polls the same batches again and nothing is submitted twice; lines
the API did not run (the batch expired or was cancelled) or answered with a transient error go again
in a next round; the answers land in the response store as received, marked as batch answers, and
the image jobs make the same files as in live mode from them, at the batch price.

Shapes (google-genai 3.6.1, batches.py): ``batches.create(model=..., src=[InlinedRequest...],
config={"display_name": ...})`` sends inline requests (``{"request": ..., "metadata": {"key"}}``,
under 20 MB in all) to ``models/{model}:batchGenerateContent``; the batch is an operation
``batches/<id>`` whose ``metadata.state`` goes ``BATCH_STATE_PENDING`` / ``RUNNING`` to
``SUCCEEDED`` / ``FAILED`` / ``CANCELLED`` / ``EXPIRED``; inline requests get inline results,
``metadata.output.inlinedResponses.inlinedResponses``, each a ``response`` or an ``error`` with the
request's ``metadata`` (or, when the API puts them in a file, ``output.responsesFile``: JSONL lines
with a ``key``, read through ``files.download``). The batch is read back as received (the SDK's HTTP client, ``GET
batches/<id>``), so each stored answer is the JSON the API sent, not a re-serialised model.

A batch a killed run was creating is found again by its display name, recorded before it is
created: the digest of its input and a mark of its own (a later round may submit the same input).
The record is ``<response store>/batches/gemini.json`` (its own file: OpenAI's batches keep theirs
in state.json).
"""

import base64
import fcntl
import hashlib
import json
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_json
from image_batch.common.redact import redact
from image_batch.images import faults
from image_batch.images.batch import RetriedCalls, edit_inputs, pending, uncollected
from image_batch.images.store import open_store, request_key
from image_batch.providers import get_provider

# Google's limit for inline requests is 20 MB in all; a few MB per batch also keeps each inline
# result (images, base64) a reasonable download.
INLINE_BYTES = 19_000_000
INLINE_LINES = 500
# GONE: a recorded batch the API no longer knows (404 while the API answers): nothing more comes of it
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "GONE"}
PREFIX = "image-batch-"  # display name: PREFIX + digest of the input + "-" + a mark of the submission


def _state_name(state):
    """BATCH_STATE_SUCCEEDED / JOB_STATE_SUCCEEDED -> SUCCEEDED."""
    text = str(state or "")
    for prefix in ("BATCH_STATE_", "JOB_STATE_"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


# gRPC canonical codes (a batch line's error is a google.rpc.Status: its "code" is one of these, not
# an HTTP status) -> name; the transient ones go again in a next round.
GRPC_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
TRANSIENT = {"UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNAVAILABLE"}


def line_error(error):
    """(retry?, reason) of a batch line's ``error``: a google.rpc.Status (``code`` a gRPC code, no
    ``status`` name), or an HTTP-shaped error (``code`` an HTTP status, ``status`` a name)."""
    error = error if isinstance(error, dict) else {"message": str(error or "")}
    try:
        code = int(error.get("code") or 0)
    except (TypeError, ValueError):
        code = 0
    name = str(error.get("status") or (GRPC_NAMES.get(code) if code < 100 else "") or "")
    if code >= 100:
        retry = code in faults.RETRY_STATUSES or code >= 500 or name in TRANSIENT
    else:
        retry = name in TRANSIENT
    said = f"{name} ({code})" if name and code else name or str(code)
    return retry, f"the Batch API answered {said}: {error.get('message') or 'no reason'}"


def _counts(stats):
    """A batch's ``batchStats`` said in words, e.g. ' (6 request(s): 5 succeeded, 1 failed)' (int64s
    come as strings); '' without them."""
    if not isinstance(stats, dict) or not stats.get("requestCount"):
        return ""
    said = [
        f"{stats[f'{name}RequestCount']} {word}"
        for name, word in (("successful", "succeeded"), ("failed", "failed"), ("pending", "pending"))
        if str(stats.get(f"{name}RequestCount") or "0") != "0"
    ]
    return f" ({stats['requestCount']} request(s){': ' + ', '.join(said) if said else ''})"


class GeminiBatchState:
    """The Gemini batches this response store has submitted (persisted, flock'ed)."""

    def __init__(self, store_dir):
        self.folder = Path(store_dir) / "batches"
        self.path = self.folder / "gemini.json"
        self.data = {"batches": []}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                assert isinstance(self.data.get("batches"), list)
            except (OSError, ValueError, AttributeError, AssertionError):
                raise UserError(
                    f"{self.path}: batch mode's record of submitted Gemini batches is not valid: restore it from a "
                    "backup (moving it aside would submit, and pay for, its batches' requests again)"
                ) from None

    @contextmanager
    def locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".gemini.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self.__init__(self.folder.parent)
            yield self

    @property
    def batches(self):
        return self.data["batches"]

    def save(self):
        atomic_write_json(self.path, self.data)


def waiting(store):
    """The recorded Gemini batches not yet collected (read only: planning may call it)."""
    try:
        return uncollected(GeminiBatchState(store.state_dir).batches)
    except UserError:
        return []


def _base64(data):
    """JSON for the bytes of an inline_data part (sizes and digests: as the SDK sends them)."""
    if isinstance(data, (bytes, bytearray)):
        return base64.b64encode(data).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(data).__name__}")


def chunks(requests, provider, max_lines, max_bytes, inputs=None):
    """(model, [(key, inline request)...], digest) per batch: one list per model, split at the
    limits, built when the caller asks for it (a generator). ``inputs``: {key: Inputs} of the edit
    requests (images.batch.edit_inputs), whose pictures are read when their line is built: a batch's
    pictures are read when it is about to be submitted, never every batch's before the first."""
    current, size, model = [], 0, None
    inputs = inputs or {}

    def close():
        text = json.dumps([[k, body] for k, body in current], sort_keys=True, ensure_ascii=False, default=_base64)
        return (model, list(current), hashlib.sha256(text.encode("utf-8")).hexdigest())

    for key, request in sorted(requests.items(), key=lambda item: (item[1]["model"], item[0])):
        if current and (request["model"] != model or len(current) >= max_lines):
            yield close()  # before this line's pictures are read
            current, size = [], 0
        body = provider.batch_body(request, inputs[key]) if key in inputs else provider.batch_body(request)
        length = len(json.dumps(body, ensure_ascii=False, default=_base64).encode("utf-8"))
        if current and size + length > max_bytes:
            yield close()
            current, size = [], 0
        model = request["model"]
        current.append((key, body))
        size += length
    if current:
        yield close()


class GeminiBatchRunner(RetriedCalls):
    def __init__(self, settings, log, sleep=time.sleep):
        self.batch = settings.batch
        self.settings = settings
        self.log = log
        self.provider = get_provider("gemini", settings)
        self.store = open_store(settings)
        self.retry = settings.retry
        self.sleep = sleep
        self._outputs = {}
        self._request = None  # a request of the run: what classify names (model, endpoint)

    def client(self, request):
        self._request = self._request or request
        return self.provider.client(request)

    # -- transient faults of the batch endpoints: retried as live calls are -------------------------

    def classify(self, exc):
        """The provider's verdict on an exception of a batch or file call (None: not an API fault)."""
        return self.provider.classify(exc, self._request)

    def _find_created(self, client, name):
        """The batch whose display name is ``name`` (the list is read to its end, page by page), or None."""
        return next((b for b in client.batches.list(config={"page_size": 100}) if b.display_name == name), None)

    def find_created(self, client, name):
        return self.call("looking for a batch an earlier attempt created", self._find_created, client, name)

    # -- submitting -------------------------------------------------------------------------------

    def recover(self, state, client):
        """Batches a killed run was creating when it died: adopt the ones the API made."""
        for entry in state.batches:
            if entry.get("status") == "submitting" and not entry.get("id"):
                found = self.find_created(client, entry.get("display_name") or PREFIX + entry["digest"])
                if found is not None:
                    entry.update(id=found.name, status=_state_name(found.state))
                    self.log(f"found batch {found.name}, created by an earlier run that was stopped; polling it")
                else:
                    entry.update(status="not-created", collected=True)
                state.save()

    def submit(self, state, client, model, lines, digest):
        entry = {"digest": digest, "model": model, "keys": [k for k, _ in lines], "status": "submitting"}
        entry["started_at"] = int(time.time())
        # the input's digest and this submission's own mark: a later round may submit the same lines
        # again (their batch expired), and only this name tells its batch from the earlier one
        entry["display_name"] = name = f"{PREFIX}{digest}-{uuid.uuid4().hex[:8]}"
        state.batches.append(entry)
        state.save()  # before anything is created: a run killed from here on looks before it submits

        def lost():
            found = self.find_created(client, name)
            if found is not None:
                self.log(f"Gemini batch {found.name} was created although its answer was lost: polling it")
            return found

        job = self.call(
            "creating a Gemini batch",
            client.batches.create,
            model=model,
            src=[{**body, "metadata": {"key": key}} for key, body in lines],
            config={"display_name": name},
            lost=lost,
        )
        entry.update(id=job.name, status=_state_name(job.state))
        state.save()
        self.log(f"submitted Gemini batch {job.name}: {len(lines)} request(s)")
        return entry

    # -- waiting and collecting -------------------------------------------------------------------

    def _get(self, client, name):
        """The batch operation as received (JSON), through the SDK's own HTTP client."""
        answer = client._api_client.request("get", name, {})
        return json.loads(answer.body or "{}")

    def _download(self, client, name):
        """The bytes of a results file: through files.download (``/v1beta/files/<id>:download``), or,
        where that is not served (404), at the address Google's REST docs give
        (``/download/v1beta/files/<id>:download?alt=media``)."""
        from google.genai import errors

        try:
            return client.files.download(file=name)
        except errors.ClientError as exc:
            if exc.code != 404:
                raise
            path = "download/{api_version}/files/" + name.removeprefix("files/") + ":download?alt=media"
            return client._api_client.download_file(path)

    def _api_answers(self, client):
        """Whether the Batch API answers at all (a 404 for one batch, not for the endpoint)."""
        try:
            next(iter(client.batches.list(config={"page_size": 1})), None)
        except Exception:
            return False
        return True

    def wait(self, state, client, entries):
        while True:
            running = [e for e in entries if e["status"] not in TERMINAL]
            if not running:
                return
            pause = float(self.batch.poll_seconds)
            for entry in running:
                try:
                    operation = self.call(f"polling {entry['id']}", self._get, client, entry["id"])
                except Exception as exc:
                    if not self._gone(exc, client):
                        pause = self._poll_again_later(exc, entry, pause)
                        continue
                    entry.update(status="GONE", collected=True, gone_at=int(time.time()))
                    state.save()
                    self.log(
                        f"Gemini batch {entry['id']} is no longer known to the API (404): marked as gone in "
                        f"{state.path}; its {len(entry['keys'])} request(s) are asked for again"
                    )
                    continue
                metadata = operation.get("metadata") or {}
                status = _state_name(metadata.get("state"))
                if status != entry["status"]:
                    self.log(f"Gemini batch {entry['id']}: {status}{_counts(metadata.get('batchStats'))}")
                entry["status"] = status
                if status in TERMINAL:
                    self._outputs[entry["id"]] = operation
                    if operation.get("error"):
                        entry["error"] = operation["error"]  # a google.rpc.Status
                state.save()
            if any(e["status"] not in TERMINAL for e in entries):
                self.sleep(pause)

    def _results_file(self, client, entry, name):
        """The lines of a batch's results file. One the API no longer has (404 at both addresses,
        while the Batch API answers: deleted, or no longer kept) is said once and read as empty: its
        requests are asked for again, and it never stops a later run."""
        try:
            data = self.call(f"downloading {name}", self._download, client, name)
        except Exception as exc:
            if not self._gone(exc, client):
                raise
            entry["results_file_gone"] = True
            self.log(
                f"the results file {name} of Gemini batch {entry['id']} is unknown to the API (404): deleted "
                "or no longer kept before a run collected it; its request(s) without a stored answer are asked "
                "for again"
            )
            return []
        return [json.loads(text) for text in data.decode("utf-8").splitlines() if text.strip()]

    def collect(self, state, client, entry, requests, result):
        if entry.get("collected"):
            return
        keys = set(entry["keys"])
        operation = self._outputs.get(entry["id"]) or self.call(
            f"reading {entry['id']}", self._get, client, entry["id"]
        )
        output = (operation.get("metadata") or {}).get("output") or operation.get("response") or {}
        lines = (output.get("inlinedResponses") or {}).get("inlinedResponses") or []
        if output.get("responsesFile"):  # results in a file (never resubmit for want of reading it)
            lines = self._results_file(client, entry, output["responsesFile"])
        ordered = entry["keys"] if len(lines) == len(entry["keys"]) else [None] * len(lines)
        for line, by_position in zip(lines, ordered, strict=True):
            # the key we sent in the metadata; without it, the position (inline results keep the
            # requests' order): a line never goes unread, so never resubmitted and paid twice
            key = line.get("key") or (line.get("metadata") or {}).get("key") or by_position
            if key not in keys:
                continue
            if isinstance(line.get("response"), dict):
                with self.store.lock(key):
                    if not self.store.has(key):
                        answer = self.provider.batch_answer(line["response"])
                        self.store.keep(key, requests.get(key) or {"key": key}, answer, "batch", self.log)
                        result.setdefault("bought", []).append(key)
                result["request_ids"].append(line["response"].get("responseId"))
                result["stored"] += 1
                continue
            retry, reason = line_error(line.get("error"))
            result["retry" if retry else "failed"][key] = reason
        if entry["status"] == "FAILED":  # lines it did not answer: again if its error may pass, else failed
            retry, reason = line_error(entry.get("error") or {"message": "the Batch API failed the batch"})
            answered = {line.get("key") or (line.get("metadata") or {}).get("key") for line in lines}
            for key in keys - set(result["failed"]) - set(result["retry"]) - answered:
                result["retry" if retry else "failed"][key] = f"the batch failed: {reason}"
        entry["collected"] = True
        state.save()

    # -- live mode: a batch an earlier run left is never paid for again ----------------------------

    def settle(self, specs, abandon=False):
        """Live mode, before its first call: recorded batches that cover requests of ``specs`` still
        to pay for are collected if they ended, else waited for (or, with ``abandon``, cancelled and
        their completed lines collected). What they did not answer is made live."""
        result = {"mode": "live", "batches": [], "stored": 0, "failed": {}, "retry": {}, "request_ids": []}
        result["rounds"] = 0
        todo = pending(specs, self.store)
        if not todo:
            return result
        requests_all = {request_key(s["request"]): s["request"] for s in specs}
        any_request = next(iter(todo.values()))
        client = self.client(any_request)
        with GeminiBatchState(self.store.state_dir).locked() as state:
            self.recover(state, client)
            covering = uncollected(state.batches, todo)
            for entry in covering:
                head = f"{len(set(entry['keys']) & set(todo))} image(s) are in Gemini batch {entry['id']}"
                if entry["status"] in TERMINAL:
                    self.log(f"{head}, which has ended ({entry['status']}): collecting its answers")
                elif abandon:
                    self.call(f"cancelling {entry['id']}", client.batches.cancel, name=entry["id"])
                    self.log(
                        f"{head}: cancelled it (batch.abandon); the lines it completed are kept, "
                        "the others are made live"
                    )
                else:
                    self.log(
                        f"{head}: waiting for it (live mode does not pay twice); use "
                        "--config 'batch={abandon: true}' to cancel it and make them live"
                    )
            if not covering:
                return result
            self.wait(state, client, covering)
            for entry in covering:
                self.collect(state, client, entry, requests_all, result)
                result["batches"].append(entry["id"])
        result["failed"] = {}  # live mode: what the batches did not answer is made by the live jobs
        return result

    # -- the whole job ----------------------------------------------------------------------------

    def run(self, specs, live=False, abandon=False):
        """Submit, wait for and collect the batches of ``specs`` (``live``: only settle the batches
        earlier runs left, see :meth:`settle`); an API fault that stops the run (a bad key, a refused
        setting, ...) is one clear line, with what is already recorded kept."""
        try:
            return self.settle(specs, abandon) if live else self._run(specs)
        except UserError:
            raise
        except Exception as exc:
            fault = self.provider.classify(exc, specs[0]["request"] if specs else None)
            if fault is None:
                raise
            raise UserError(
                f"Gemini batch mode stopped: {redact(fault.reason).rstrip('.')}. Batches already submitted are "
                f"recorded in {Path(self.store.state_dir) / 'batches' / 'gemini.json'}; run again to go on (nothing is "
                "submitted twice)."
            ) from None

    def _run(self, specs):
        result = {"mode": "batch", "batches": [], "stored": 0, "failed": {}, "retry": {}, "request_ids": []}
        result["rounds"] = 0
        requests_all = {request_key(s["request"]): s["request"] for s in specs}
        if not requests_all:
            return result
        any_request = next(iter(requests_all.values()))
        client = self.client(any_request)
        max_lines = min(int(self.batch.max_lines), INLINE_LINES)
        max_bytes = min(int(self.batch.max_bytes), INLINE_BYTES)
        with GeminiBatchState(self.store.state_dir).locked() as state:
            self.recover(state, client)
            earlier = uncollected(state.batches, requests_all)
            for entry in earlier:
                self.log(
                    f"Gemini batch {entry['id']} was submitted by an earlier run: polling it, not submitting again"
                )
            for round_number in range(1, self.batch.max_rounds + 1):
                todo = pending(specs, self.store, exclude=set(result["failed"]))
                waiting = {k for e in earlier for k in e["keys"]}
                new = {k: r for k, r in todo.items() if k not in waiting}
                if not new and not earlier:
                    break
                result["rounds"] = round_number
                if new:
                    self.log(f"round {round_number}: {len(new)} request(s) not in the response store")
                entries = list(earlier)
                pictures = edit_inputs(specs, new, self.settings)
                pictures.verify()  # every picture checked before the first batch, none kept
                for model, lines, digest in chunks(new, self.provider, max_lines, max_bytes, pictures):
                    entries.append(self.submit(state, client, model, lines, digest))
                earlier = []
                result["retry"] = {}
                self.wait(state, client, entries)
                for entry in entries:
                    self.collect(state, client, entry, requests_all, result)
                    result["batches"].append(entry["id"])
            for key in pending(specs, self.store, exclude=set(result["failed"])):
                result["failed"][key] = result["retry"].get(key) or (
                    f"no answer after {result['rounds']} batch round(s) (the batches expired or were cancelled)"
                )
        return result
