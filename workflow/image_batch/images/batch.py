"""Batch mode: every image to make that has no answer in the response store is asked for through
OpenAI's Batch API (half the price, answers within 24 hours), and the answers land in the response
store (marked as batch answers: their images are billed at the batch price). This happens when a
real run starts (Snakemake's onstart, once the jobs are planned; never in a dry run, --touch or
any other mode that runs no job). The image jobs then make each PNG and sidecar from the store
exactly as in live mode, without a live call.

Nothing is ever submitted twice: each batch is recorded in ``<response_store>/batches/state.json``
(fsynced) before and after it is created, and a batch whose creation a killed run did not get to
record is found again by the digest of its input, kept in the batch's metadata. A rerun, or a run
after ``kill -9``, polls the batches it already has. Lines the API did not run (the batch expired
or was cancelled), gave up on or answered with a transient error are submitted again in a next
round; lines it refused are failures of their own rows, reported with the reason.

Batches are never forgotten: a live-mode run, too, first collects the recorded batches that cover
requests it is about to pay for, and waits for the ones still running (or, with batch.abandon,
cancels them and pays live only for the lines they did not complete). Calls to the Files and Batch
APIs survive transient faults (classified by the provider, retried with backoff); a recorded batch
the API answers 404 for is marked gone.
"""

import datetime
import fcntl
import functools
import hashlib
import io
import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes, atomic_write_json
from image_batch.common.joblog import JobLog
from image_batch.common.redact import redact
from image_batch.images.faults import RETRY, classify_api_error
from image_batch.images.store import open_store, request_key, unkeyed_request
from image_batch.providers import get_provider
from image_batch.run import ledger

DONE = Path("results/batch/done.json")
LOG = Path("results/logs/batch.log")
# "gone": a recorded batch the API no longer knows (404): nothing more will come of it
TERMINAL = {"completed", "failed", "expired", "cancelled", "gone"}
NOT_RUN = {"batch_expired", "batch_cancelled"}  # lines the API never ran: not billed, submit again
# Error codes of failed lines that may well succeed on another try: they go into the next round.
AGAIN_CODES = NOT_RUN | {
    "request_timeout",
    "timeout",
    "server_error",
    "internal_error",
    "server_is_overloaded",
    "rate_limit_exceeded",
    "slow_down",
}
METADATA_KEY = "image_batch_digest"
# A batch a killed run was creating is looked for among the batches created since shortly before
# the run recorded that it was about to create it: no time limit short of the API's own retention.
CLOCK_SLACK = 3600


class BatchState:
    """The batches this response store has submitted, persisted so that no run submits twice."""

    def __init__(self, store_dir):
        self.folder = Path(store_dir) / "batches"
        self.path = self.folder / "state.json"
        if not self.path.exists():
            self.data = {"batches": []}
            return
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
            problem = None if isinstance(self.data, dict) and isinstance(self.data.get("batches"), list) else "not"
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem = f"not valid JSON ({exc}), so"
        if problem:
            raise UserError(
                f"{self.path}: batch mode's record of submitted batches is {problem} in the form "
                '{"batches": [...]}: restore it from a backup; moving it aside starts a new record, and the '
                "batches it listed would not be collected (their requests would be submitted, and paid, again)"
            )

    @contextmanager
    def locked(self):
        """One batch job per response store at a time (runs in other folders may share a store)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self.__init__(self.folder.parent)  # re-read: the holder before us may have changed it
            yield self

    @property
    def batches(self):
        return self.data["batches"]

    def save(self):
        atomic_write_json(self.path, self.data)  # durable: fsynced before we go on


def uncollected(batches, keys=None):
    """The recorded batches that were created and not yet collected (covering any of ``keys``)."""
    keys = None if keys is None else set(keys)
    return [
        e
        for e in batches
        if e.get("id") and not e.get("collected") and (keys is None or set(e.get("keys") or ()) & keys)
    ]


def pending(specs, store, exclude=()):
    """{key: request} for the requests of ``specs`` that have no stored answer (each key once)."""
    found = {}
    for spec in specs:
        request = spec["request"]
        key = request_key(request)
        if key not in found and key not in exclude and not store.has_answer(request, request.get("base_url")):
            found[key] = request
    return found


def input_files(requests, provider, max_lines, max_bytes, inputs=None, endpoint=None):
    """JSONL input files (bytes, keys) for ``requests``, split at the API's per-file limits, and
    one model (and endpoint) per file: the Batch API takes one model per input file (rows with
    their own model make several files; the order within one model is kept).
    ``inputs`` ({key: descriptions.references.Inputs}) and ``endpoint``: lines of edit requests,
    their pictures in the line (a batch has one endpoint: edits go in batches of their own)."""
    return list(iter_input_files(requests, provider, max_lines, max_bytes, inputs, endpoint))


def iter_input_files(requests, provider, max_lines, max_bytes, inputs=None, endpoint=None):
    """:func:`input_files`, one file at a time: edit lines carry their pictures (data URLs), so a
    batch of thousands of photos is built, and its pictures read, one input file at a time, never
    all in memory at once (``inputs`` may be a lazy mapping, see :func:`edit_inputs`)."""
    buffer, keys, size, model = io.BytesIO(), [], 0, None
    inputs = inputs or {}
    ordered = sorted(requests.items(), key=lambda item: (item[1].get("base_url") or "", item[1].get("model") or ""))
    for key, request in ordered:
        this = (request.get("base_url"), request.get("model"))
        if keys and (this != model or len(keys) >= max_lines):  # full before this line's pictures are read
            yield buffer.getvalue(), keys
            buffer, keys, size = io.BytesIO(), [], 0
        body = provider.batch_body(request, inputs[key]) if key in inputs else provider.batch_body(request)
        line = (
            json.dumps(
                {
                    "custom_id": key,
                    "method": "POST",
                    "url": endpoint or provider.batch_endpoint,
                    "body": body,
                },
                ensure_ascii=False,
            ).encode("utf-8")
            + b"\n"
        )
        del body
        if keys and size + len(line) > max_bytes:
            yield buffer.getvalue(), keys
            buffer, keys, size = io.BytesIO(), [], 0
        model = this
        buffer.write(line)
        keys.append(key)
        size += len(line)
    if keys:
        yield buffer.getvalue(), keys


def _when(timestamp):
    if not timestamp:
        return "at an unknown time"
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


class RetriedCalls:
    """Calls of a Batch API (files, batches) that survive transient faults, as live calls do. The
    runner gives ``retry``, ``batch`` (poll_seconds), ``log``, ``sleep`` and ``classify(exc)``."""

    def _backoff(self, attempt, fault):
        if fault.retry_after is not None:  # retry-after, or Google's RetryInfo
            return min(fault.retry_after, max(self.retry.max_wait, float(self.batch.poll_seconds)))
        wait = min(self.retry.initial_wait * 2 ** (attempt - 1), self.retry.max_wait)
        return wait + random.uniform(0, self.retry.initial_wait)

    def call(self, what, fn, *args, lost=None, **kwargs):
        """``fn(*args, **kwargs)``, transient faults (429, 5xx, resets, timeouts) retried with backoff
        that honours the server's delay, up to retry.max_attempts calls / retry.max_seconds. ``lost``:
        called before each new try; what it returns (not None) is the answer (a create whose answer
        was lost: the batch it made)."""
        began, attempt = time.monotonic(), 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                fault = self._retryable(exc, attempt, began)
                if fault is None:
                    raise
                wait = self._backoff(attempt, fault)
                self.log(f"{what} failed ({redact(fault.reason)}); trying again in {wait:.2f}s")
                self.sleep(wait)
                found = lost() if lost else None
                if found is not None:
                    return found

    def _retryable(self, exc, attempt, began):
        """The fault of ``exc`` when another try may cure it and the retry budget allows one, else None."""
        fault = self.classify(exc)
        if fault is None or fault.disposition != RETRY or attempt >= self.retry.max_attempts:
            return None
        return fault if time.monotonic() - began <= self.retry.max_seconds else None

    def _poll_again_later(self, exc, entry, pause):
        """A poll of ``entry`` whose transient fault outlasted the retry budget (a long outage in a
        24-hour wait): said, and the batch is polled again after ``pause`` (at least the server's
        delay), the pause returned. Any other fault is raised."""
        fault = self.classify(exc)
        if fault is None or fault.disposition != RETRY:
            raise exc
        self.log(f"polling {entry['id']} failed ({redact(fault.reason)}); polling again later")
        return pause if fault.retry_after is None else max(pause, fault.retry_after)

    def _gone(self, exc, client=None):
        """Whether ``exc`` is a 404 for one batch or file while the Batch API answers (deleted, or no
        longer kept), not for the endpoint (a wrong base URL). The runner gives ``_api_answers``."""
        fault = self.classify(exc)
        return fault is not None and fault.status == 404 and self._api_answers(client)


class BatchRunner(RetriedCalls):
    def __init__(self, settings, log, client=None, sleep=time.sleep, provider="openai"):
        self.batch = settings.batch
        self.settings = settings
        self.retry = settings.retry
        self.log = log
        self.provider = get_provider(provider, settings)
        if not self.provider.batch:
            raise UserError(f"mode: batch needs a provider with a Batch API; {provider!r} has none")
        self.client = client or self.provider.batch_client()
        self.store = open_store(settings)
        self.sleep = sleep

    # -- calls that survive transient faults --------------------------------------------------------

    def classify(self, exc):
        """The provider's verdict on an exception of a Files/Batch call (None: not an API fault)."""
        return self.provider.classify(exc)

    # -- submitting -------------------------------------------------------------------------------

    def _find_created(self, digest, since):
        """A batch created for ``digest`` by a run that died before recording it. The list is newest
        first: it is read back to shortly before the run recorded that it was about to create one."""
        for batch in self.client.batches.list(limit=100):
            if since is not None and batch.created_at < since - CLOCK_SLACK:
                break
            if (batch.metadata or {}).get(METADATA_KEY) == digest:
                return batch
        return None

    def find_created(self, digest, since):
        return self.call("looking for a batch an earlier attempt created", self._find_created, digest, since)

    def recover(self, state):
        """Batches a killed run was creating when it died: adopt the ones the API made."""
        for entry in state.batches:
            if entry.get("status") == "submitting" and not entry.get("id"):
                found = self.find_created(entry["digest"], entry.get("started_at"))
                if found is not None:
                    entry.update(id=found.id, status=found.status, submitted_at=found.created_at)
                    self.log(f"found batch {found.id}, created by an earlier run that was stopped; polling it")
                else:
                    entry.update(status="not-created", collected=True)
                state.save()

    def _create(self, entry, upload_id):
        """Create the batch; an attempt whose answer was lost may have created it: look before trying
        again, so that a retry never makes a second batch of the same lines."""
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.client.batches.create(
                    input_file_id=upload_id,
                    endpoint=entry.get("endpoint") or self.provider.batch_endpoint,
                    completion_window=self.batch.completion_window,
                    metadata={METADATA_KEY: entry["digest"]},
                )
            except Exception as exc:
                fault = self._retryable(exc, attempt, began)
                if fault is None:
                    raise
                wait = self._backoff(attempt, fault)
                self.log(f"creating a batch failed ({redact(fault.reason)}); trying again in {wait:.2f}s")
                self.sleep(wait)
                found = self.find_created(entry["digest"], entry["started_at"])
                if found is not None:
                    self.log(f"batch {found.id} was created although its answer was lost: polling it")
                    return found

    def submit(self, state, content, keys, endpoint=None):
        digest = hashlib.sha256(content).hexdigest()
        entry = {"digest": digest, "keys": keys, "lines": len(keys), "bytes": len(content), "status": "submitting"}
        if endpoint:  # a batch of edit requests (a generations batch names none, as before)
            entry["endpoint"] = endpoint
        entry["started_at"] = int(time.time())
        state.batches.append(entry)
        state.save()  # before anything is created: a run killed from here on looks before it submits
        upload = self.call(
            "uploading a batch input file",
            self.client.files.create,
            file=(f"image-batch-{digest[:16]}.jsonl", content),
            purpose="batch",
        )
        entry["input_file_id"] = upload.id
        state.save()
        batch = self._create(entry, upload.id)
        entry.update(id=batch.id, status=batch.status, submitted_at=batch.created_at)
        state.save()
        self.log(f"submitted batch {batch.id}: {len(keys)} request(s), {len(content):,} bytes")
        return entry

    # -- waiting and collecting -------------------------------------------------------------------

    def _api_answers(self, client=None):
        """Whether the Batch API answers at all (a 404 for one batch, not for the endpoint)."""
        try:
            self.call("listing batches", self.client.batches.list, limit=1)
        except Exception:
            return False
        return True

    def wait(self, state, entries):
        """Poll until every batch in ``entries`` has ended. Transient errors are waited out; a batch
        the API no longer knows (404) is marked gone, once, and blocks nothing."""
        while True:
            running = [e for e in entries if e["status"] not in TERMINAL]
            if not running:
                return
            pause = float(self.batch.poll_seconds)
            for entry in running:
                try:
                    batch = self.call(f"polling {entry['id']}", self.client.batches.retrieve, entry["id"])
                except Exception as exc:
                    if self._gone(exc):
                        entry.update(status="gone", collected=True, gone_at=int(time.time()))
                        state.save()
                        self.log(
                            f"batch {entry['id']} (submitted {_when(entry.get('submitted_at'))}) is unknown to the "
                            f"API (404): marked as gone in {state.path}; its {entry['lines']} request(s) are "
                            "asked for again"
                        )
                        continue
                    pause = self._poll_again_later(exc, entry, pause)
                    continue
                counts = batch.request_counts
                if batch.status != entry["status"]:
                    self.log(
                        f"batch {batch.id}: {batch.status}"
                        + (f" ({counts.completed}/{counts.total} done, {counts.failed} failed)" if counts else "")
                    )
                entry.update(
                    status=batch.status, output_file_id=batch.output_file_id, error_file_id=batch.error_file_id
                )
                if batch.errors and batch.errors.data:
                    entry["errors"] = [
                        f"line {e.line}: {e.message}" if e.line else e.message for e in batch.errors.data
                    ]
                state.save()
            if any(e["status"] not in TERMINAL for e in entries):
                self.sleep(pause)

    def _lines(self, file_id):
        if not file_id:
            return []
        answer = self.call(f"downloading {file_id}", self.client.files.content, file_id)
        text = answer.read().decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _file_lines(self, entry, field):
        """The lines of the batch's output or error file (``field``). A file the API no longer
        knows (404: deleted, or expired before a run collected it) is said once and read as empty:
        its requests are asked for again, and it never stops a later run."""
        try:
            return self._lines(entry.get(field))
        except Exception as exc:
            if not self._gone(exc):
                raise
        kind = "answers" if field == "output_file_id" else "errors"
        self.log(
            f"the {kind} file {entry[field]} of batch {entry['id']} is unknown to the API (404): deleted or "
            f"expired before a run collected it; its request(s) without a stored answer are asked for again"
        )
        entry[f"{field}_gone"] = True
        return []

    @staticmethod
    def line_failure(line, request=None):
        """(again, reason) for a line of a batch's error file: ``again`` when another try may succeed
        (it never ran, timed out, hit a rate limit or a server error); the reason names the code and
        the parameter the API objected to."""
        error, response = line.get("error") or {}, line.get("response") or {}
        status = response.get("status_code")
        detail = (response.get("body") or {}).get("error") or {}
        code = detail.get("code") or error.get("code")
        param = detail.get("param") or error.get("param")
        message = detail.get("message") or error.get("message") or "no reason given"
        reason = f"the Batch API answered {status}: {message}" if status else f"the Batch API gave no answer: {message}"
        if code:
            reason += f" ({code})"
        if param:
            reason += f" (param: {param})"
        if code in AGAIN_CODES:
            return True, reason
        if status is None:
            return False, reason
        fault = classify_api_error(int(status), code, param, message, {}, request, detail.get("type"))
        return fault.disposition == RETRY, reason

    def collect(self, state, entry, requests, result):
        """Store the answers of one ended batch; note its failed lines in ``result``. Output lines
        are matched to requests by their custom_id (the API writes them in no particular order)."""
        if entry.get("collected"):
            return
        keys = set(entry["keys"])
        for line in self._file_lines(entry, "output_file_id"):
            key, response = line.get("custom_id"), line.get("response") or {}
            if key not in keys or response.get("status_code") != 200:
                continue
            with self.store.lock(key):
                if not self.store.has(key):
                    answer = self.provider.batch_answer(response)
                    self.store.keep(key, requests.get(key) or {"key": key}, answer, "batch", self.log)
                    result.setdefault("bought", []).append(key)
            result["request_ids"].append(response.get("request_id"))
            result["stored"] += 1
        for line in self._file_lines(entry, "error_file_id"):
            key = line.get("custom_id")
            if key not in keys:
                continue
            again, reason = self.line_failure(line, requests.get(key))
            if (line.get("error") or {}).get("code") in NOT_RUN:
                continue  # never ran, not billed: asked for again in the next round
            if again:
                result["retry"][key] = reason
            else:
                result["failed"][key] = reason
        if entry["status"] == "failed":  # the whole input was refused: every line fails with its reason
            reason = "; ".join(entry.get("errors") or ["the Batch API refused the input file"])
            for key in keys - set(result["failed"]):
                result["failed"][key] = f"the Batch API refused the batch: {reason}"
        entry["collected"] = True
        state.save()

    # -- the whole job ----------------------------------------------------------------------------

    def _requests(self, specs):
        """({key: request} of ``specs``, {format-1 key: key}). Batches of a version before requests
        carried their endpoint list the keys of that format: for the endpoint its answers belong to,
        those keys are these requests too (never pay twice)."""
        requests_all = {request_key(s["request"]): s["request"] for s in specs}
        alias = {}  # format-1 key -> the request's key
        for key, request in list(requests_all.items()):
            if "base_url" in request and request["base_url"] == self.store.unkeyed_endpoint(request["base_url"]):
                old = unkeyed_request(request)
                alias[request_key(old)] = key
                requests_all.setdefault(request_key(old), old)
        return requests_all, alias

    @staticmethod
    def _result():
        return {"mode": "batch", "batches": [], "stored": 0, "failed": {}, "retry": {}, "request_ids": [], "rounds": 0}

    def settle(self, specs, abandon=False, noun="image(s)"):
        """Live mode, before its first call: the recorded batches that cover requests of ``specs``
        still to pay for are collected if they ended, else waited for (or, with ``abandon``,
        cancelled, and their completed lines collected): live mode never pays again for a request
        a batch was asked for. Lines the batches did not answer are left to the live jobs."""
        result = self._result()
        requests_all, alias = self._requests(specs)
        with BatchState(self.store.state_dir).locked() as state:
            self.recover(state)
            todo = set(pending(specs, self.store))
            covering = []
            for entry in state.batches:
                if not entry.get("id") or entry.get("collected"):
                    continue
                covered = {alias.get(k, k) for k in entry["keys"]} & todo
                if not covered:
                    continue
                covering.append(entry)
                when = _when(entry.get("submitted_at"))
                head = f"{len(covered)} {noun} are in batch {entry['id']} (submitted {when})"
                if entry["status"] in TERMINAL:
                    self.log(f"{head}, which has ended ({entry['status']}): collecting its answers")
                elif abandon:
                    try:
                        self.call(f"cancelling {entry['id']}", self.client.batches.cancel, entry["id"])
                    except Exception as exc:
                        fault = self.classify(exc)
                        if fault is None or fault.disposition == RETRY:
                            raise  # a 400 says it has ended meanwhile: polling tells
                    self.log(
                        f"{head}: cancelled it (batch.abandon); the lines it completed are kept, the others "
                        "are made live"
                    )
                else:
                    self.log(
                        f"{head}: waiting for it (live mode does not pay twice); use "
                        "--config 'batch={abandon: true}' to cancel it and make them live"
                    )
            if not covering:
                return result
            self.wait(state, covering)
            for entry in covering:
                self.collect(state, entry, requests_all, result)
                result["batches"].append(entry["id"])
        result["failed"], result["retry"] = {}, {}  # the live jobs make (or fail) what the batches did not
        return result

    def run(self, specs):
        result = self._result()
        requests_all, alias = self._requests(specs)
        with BatchState(self.store.state_dir).locked() as state:
            self.recover(state)
            # batches an earlier (stopped) run submitted and did not collect: wait for those first
            earlier = uncollected(state.batches, requests_all)
            for entry in earlier:
                self.log(
                    f"batch {entry['id']} was submitted by an earlier run ({entry['status']}): polling it, "
                    "not submitting again"
                )
            for round_number in range(1, self.batch.max_rounds + 1):
                todo = pending(specs, self.store, exclude=set(result["failed"]))
                waiting = {alias.get(k, k) for e in earlier for k in e["keys"]}
                new = {k: r for k, r in todo.items() if k not in waiting}
                if not new and not earlier:
                    break
                result["rounds"] = round_number
                if new:
                    self.log(f"round {round_number}: {len(new)} request(s) not in the response store")
                entries = list(earlier)
                edits = {k: r for k, r in new.items() if r.get("references")}
                plain = {k: r for k, r in new.items() if k not in edits}
                for content, keys in input_files(plain, self.provider, self.batch.max_lines, self.batch.max_bytes):
                    entries.append(self.submit(state, content, keys))
                if edits:  # edit requests: a batch of their own, the pictures in each line
                    pictures = edit_inputs(specs, edits, self.settings)
                    pictures.verify()
                    endpoint = self.provider.batch_edit_endpoint
                    limits = (self.batch.max_lines, self.batch.max_bytes)
                    for content, keys in iter_input_files(edits, self.provider, *limits, pictures, endpoint):
                        entries.append(self.submit(state, content, keys, endpoint))
                earlier = []
                result["retry"] = {}
                self.wait(state, entries)
                for entry in entries:
                    self.collect(state, entry, requests_all, result)
                    result["batches"].append(entry["id"])
            # a line refused in an old batch failed under its format-1 key: the row's key says it now
            result["failed"] = {alias.get(k, k): reason for k, reason in result["failed"].items()}
            result["retry"] = {alias.get(k, k): reason for k, reason in result["retry"].items()}
            left = pending(specs, self.store, exclude=set(result["failed"]))
            for key in left:
                result["failed"][key] = result["retry"].get(key) or (
                    f"no answer after {result['rounds']} batch round(s) (the batches expired or were cancelled)"
                )
        return result


class _EditInputs:
    """{key: Inputs} of edit requests, read when a line asks (a batch of thousands of photos is
    never all in memory); a picture many lines share (a logo) is read once while the pictures
    read so far stay under READ_CACHE_BYTES."""

    READ_CACHE_BYTES = 64 * 1024 * 1024

    def __init__(self, specs, settings):
        self.specs, self.settings, self.read = specs, settings, {}

    def __contains__(self, key):
        return key in self.specs

    def __bool__(self):
        return bool(self.specs)

    def verify(self):
        """Every picture read and checked against its hash once, kept nowhere: before the first
        batch is submitted, as when they were all read at once (a changed picture stops the run
        before any batch, not between two)."""
        from image_batch.descriptions import references

        seen = set()
        for spec in self.specs.values():
            entries = [*spec["references"], *([spec["mask"]] if spec.get("mask") else [])]
            names = {(entry["path"], entry["sha256"]) for entry in entries}
            if not names <= seen:
                references.load(spec, self.settings.input_csv)  # (its bytes dropped at once)
                seen |= names

    def __getitem__(self, key):
        from image_batch.descriptions import references

        if sum(len(data) for _, data, _ in self.read.values()) > self.READ_CACHE_BYTES:
            self.read.clear()
        return references.load(self.specs[key], self.settings.input_csv, self.read)


def edit_inputs(specs, keys, settings):
    """{key: Inputs} of the edit requests among ``keys``: a mapping that reads each request's
    pictures when its line is built (checked against their hashes then)."""
    found = {}
    for spec in specs:
        if spec.get("references"):
            key = request_key(spec["request"])
            if key in keys and key not in found:
                found[key] = spec
    return _EditInputs(found, settings)


def waiting_batches(store, strict=True):
    """The recorded batches not yet collected (read only: planning may call it). A broken record
    is a UserError (``strict``: a real run must not pay for what it may list), else none."""
    try:
        state = BatchState(store.state_dir)
    except UserError:
        if strict:
            raise
        return []
    return [e for e in state.batches if not e.get("collected") and e.get("status") != "not-created"]


def _run_group(name, wanted, settings, log, mode):
    """The batches of one provider's requests (``wanted``: their specs): submitted, waited for and
    collected (batch mode), or the recorded ones settled (live mode)."""
    try:
        # (Ctrl-C / SIGTERM while waiting: image_batch.run.interrupt says one line, exits 130 / 143)
        if name == "gemini":
            from image_batch.images.gemini_batch import GeminiBatchRunner

            runner = GeminiBatchRunner(settings, log)
            return runner.run(wanted, live=mode != "batch", abandon=settings.batch.abandon)
        runner = BatchRunner(settings, log)
        if mode == "batch":
            return runner.run(wanted)
        return runner.settle(wanted, abandon=settings.batch.abandon)
    except UserError:
        raise
    except KeyboardInterrupt:  # where Snakemake's own Ctrl-C handling applies (job processes)
        message = (
            f"stopped while waiting for batches; they are recorded in {open_store(settings).state_dir}"
            "/batches/: the next run (batch or live mode) collects them, or waits for them, and "
            "submits nothing twice"
        )
        log(message)
        raise UserError(message) from None
    except Exception as exc:
        fault = get_provider(name, settings).classify(exc)
        if fault is None:
            raise
        raise UserError(
            f"batch mode stopped: {redact(fault.reason)}. Batches already submitted are "
            f"recorded in {open_store(settings).state_dir}/batches/state.json; run again to go on "
            "(nothing is submitted twice)."
        ) from None


def run_before_jobs(to_make, settings, log_file=LOG, mode=None):
    """When a real run starts (before its first job). Batch mode: submit the requests of the image
    jobs of this run (``to_make``: their specs) that have no stored answer, wait for the batches,
    store the answers. Live mode: collect, or wait for, the recorded batches that cover requests it
    is about to pay for (see :meth:`BatchRunner.settle`). Either way, write DONE (the answers this
    run's batches bought; in batch mode also the failed rows and their reasons). Gemini's Batch API
    has its own runner (images/gemini_batch.py), used in batch mode."""
    mode = mode or settings.mode
    wanted = [s for s in to_make if s["request"]["provider"] in ("openai", "gemini")]
    # per-row settings may mix providers: each goes to its own Batch API (an empty group is skipped)
    groups = {name: [s for s in wanted if s["request"]["provider"] == name] for name in ("openai", "gemini")}
    groups = {name: specs for name, specs in groups.items() if specs}
    if mode != "batch":
        store = open_store(settings)
        if "gemini" in groups:
            from image_batch.images.gemini_batch import waiting as gemini_waiting

            if not gemini_waiting(store):
                del groups["gemini"]  # live mode, and no Gemini batch was left running
        if "openai" in groups and not waiting_batches(store):
            del groups["openai"]  # live mode, and no batch was left running
        if not groups:
            return None  # nothing to do
    with JobLog(log_file, echo=True) as log:
        result = BatchRunner._result()
        for name, specs in groups.items():
            part = _run_group(name, specs, settings, log, mode)
            result["batches"] += part["batches"]
            result["stored"] += part["stored"]
            result["rounds"] = max(result["rounds"], part["rounds"])
            result["failed"].update(part["failed"])
            result["request_ids"] += part["request_ids"]
            result.setdefault("bought", []).extend(part.get("bought", []))
        by_key = {request_key(s["request"]): s for s in wanted}
        failed = {}
        for key, reason in result["failed"].items():
            spec = by_key.get(key)
            if spec:
                failed[key] = {"image_id": spec["image_id"], "context": spec["context"], "reason": redact(reason)}
                log(f"FAILED {spec['image_id']} ({spec['context']}): {redact(reason)}")
        summary = {
            "mode": mode,
            "batches": sorted(set(result["batches"])),
            "rounds": result["rounds"],
            "stored": result["stored"],
            "failed": failed,
            "request_ids": sorted(r for r in result["request_ids"] if r),
            # the answers this run bought (its image jobs count them as paid, at the batch price)
            "run": os.environ.get(ledger.VARIABLE),
            "bought": sorted(result.get("bought", [])),
        }
        if mode == "batch" and wanted:
            log(
                f"batch mode: {result['stored']} answer(s) stored from {len(summary['batches'])} batch(es), "
                f"{len(failed)} row(s) failed; making the images from the response store"
            )
        elif summary["batches"]:
            log(
                f"{result['stored']} answer(s) collected from {len(summary['batches'])} batch(es) submitted "
                "earlier; the rest are made live"
            )
        atomic_write_bytes(DONE, (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return summary


def bought_this_run(done_file=DONE):
    """The store keys of the answers this run's batches bought (empty outside a batch run)."""
    run = os.environ.get(ledger.VARIABLE)
    try:
        stat = Path(done_file).stat()
    except OSError:
        return frozenset()
    return _bought(str(done_file), stat.st_mtime_ns, run)


@functools.lru_cache(maxsize=4)
def _bought(done_file, mtime_ns, run):
    try:
        data = json.loads(Path(done_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    return frozenset(data.get("bought") or ()) if run and data.get("run") == run else frozenset()


def failure_reason(key, done_file=DONE):
    """Why the batch gave no answer for ``key`` (for the image job of that row)."""
    try:
        failed = json.loads(Path(done_file).read_text(encoding="utf-8")).get("failed", {})
    except (FileNotFoundError, ValueError):
        return "the batch gave no answer for this request (run again to submit it)"
    entry = failed.get(key)
    return entry["reason"] if entry else "the batch gave no answer for this request (run again to submit it)"
