"""The Files and Batch APIs of the fake OpenAI server, for batches of ``/v1/images/generations`` requests.

:class:`BatchAPI` is a mixin of :class:`~tests.support.fake_openai.FakeOpenAI`; it speaks the real HTTP API, so
``client.files.*`` and ``client.batches.*`` of the real ``openai`` client work through ``base_url``:

* ``POST /v1/files`` (multipart ``file`` + ``purpose``), ``GET /v1/files``, ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``.  Batch input must be named ``*.jsonl``.
* ``POST /v1/batches``, ``GET /v1/batches`` (newest first; ``limit`` / ``after`` cursor pages),
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``.

Lifecycle.  A new batch is ``validating``; batches move on only when retrieved (``GET /v1/batches/{id}``; listing
does not move them).  The first retrieve ends validation: ``failed`` (reasons in ``errors.data``) or work starts.
The ``batch_polls_to_complete``-th retrieve (default 1) sees the end state, ``completed`` (or ``expired``, see
``expire_batches_after_lines``); with 2 or more, the retrieve before it sees ``finalizing`` (every line answered,
no files yet) and earlier ones ``in_progress`` with ``request_counts`` growing.  A cancelled batch shows
``cancelling``, then ``cancelled`` at the next retrieve.

Lines are answered with the live endpoint's own logic (``_validate``, ``_pick``, ``_answer``, ``_success``), so a
prompt's ``response.body`` equals a live answer's (only ``created`` may differ: set ``fixed_created``; and a
moderation refusal names the line's own request id), a line the real API refuses on the server's ``today`` (a
retired or unknown model, a size or quality the model does not take, ...) gets the live 4xx body, and
``fail_times`` / ``set_fault_mix`` draws are used up by batch lines as by live calls; ``fail_batch_lines``
makes lines fail as the real API writes a line it gave up on (``request_timeout``: ``response`` null).  As in
the real API, the
output file holds the 200 answers and the error file the other answers (``response.status_code`` 4xx/5xx with the
live error body; ``error`` null) plus the lines never run: ``response`` null and ``error`` ``batch_expired`` (or
``batch_cancelled``).  Per-prompt behaviours in batch mode: GOOD kinds and ``not_image`` / ``bad_base64`` give the
same 200 body as live ("slow" does not sleep); canned JSON faults (every PERMANENT kind, ``rate_limit``,
``bad_retry_after``, ``server_error``, ``overloaded``, ``timeout_408``, ``conflict_409``, ``slow_down``) give error
lines with the live status and body; faults that have no JSON answer (``reset``, ``truncated``, ``bad_gateway``)
give a 500 ``server_error`` line.  ``request_counts.failed`` counts every error-file line, so a finished batch has
``completed + failed == total``.

Batch lines are not live calls: they are logged in ``batch_lines`` (``batch_paid_lines`` bill at half price, see
``batch_stats``) and use no rate-limiter slot (batches have their own pool, as in the real API); requests to the
Files/Batch endpoints are logged in ``batch_requests``; so ``calls``, ``paid_calls`` and ``stats()`` keep their
meaning.  ``fail_next`` makes Files/Batch endpoints fail to test a client's resilience; ``forget_batch`` makes
the API answer 404 for a batch; ``batch_create_delay`` holds the answer to a batch create (the batch exists).
Output and error files list their lines in random order (as the real API: match them by ``custom_id``);
``shuffle_batch_output = False`` keeps input order.
"""

import collections
import copy
import email.parser
import email.policy
import json
import random
import threading
import time
import uuid
from urllib.parse import parse_qs

BATCH_ENDPOINT = "/v1/images/generations"  # the endpoints the fake can answer in a batch: this one,
EDITS_ENDPOINT = "/v1/images/edits"  # lines in the JSON form: images[] and mask as image_url data URLs
RESPONSES_ENDPOINT = "/v1/responses"  # and the Responses API's (prompts written by a chat model)
# Endpoints the real API accepts for batches (from the client's BatchCreateParams): others are invalid values.
KNOWN_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})  # accepted on upload
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})
OPERATIONS = (
    "file_create",
    "file_list",
    "file_retrieve",
    "file_content",
    "file_delete",
    "batch_create",
    "batch_list",
    "batch_retrieve",
    "batch_cancel",
)
WINDOW = 24 * 3600  # the "24h" completion window
FILE_LIFETIME = 30 * 24 * 3600  # batch input and output files expire after 30 days
# Lines that never ran, as the real API writes them to the error file.
_UNRUN = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was cancelled before it could be executed."),
}
# Live behaviours with no JSON answer to put in a line: the batch line gets this canned fault instead.
_NO_JSON_ANSWER = frozenset({"reset", "truncated", "bad_gateway"})


class BatchAPI:
    """Files + Batch endpoints; FakeOpenAI calls ``_init_batches`` from __init__ and routes to ``_route_batch``."""

    # Real per-batch limits; shrink them on an instance to test the refusals cheaply.
    batch_max_lines = 50_000
    batch_max_bytes = 200 * 1024 * 1024

    def _init_batches(self, batch_polls_to_complete=1):
        if int(batch_polls_to_complete) < 1:
            raise ValueError(f"batch_polls_to_complete must be at least 1, not {batch_polls_to_complete!r}")
        self.batch_polls_to_complete = int(batch_polls_to_complete)  # read when a batch is created
        self.expire_batches_after_lines = None  # k: batches created while set expire after their first k lines
        # The real API writes output lines in no particular order: so does the stand-in, unless set False
        # (a client that matched lines by position rather than custom_id gets answers crossed).
        self.shuffle_batch_output = True
        # Seconds the answer to a batch create waits, after the batch is made: a client can be killed
        # while its create call is in flight (the batch exists, the client never hears of it).
        self.batch_create_delay = 0.0
        self._line_faults = []  # [[prompt substring, code, remaining]] (see fail_batch_lines)
        self._forgotten = set()  # batch ids the API no longer knows (see forget_batch)
        # seconds added to the creation time of new batches: -30 * 3600 makes one look created 30 hours ago
        self.batch_created_offset = 0
        # Taken before self._lock when both are needed (line answers call _pick), never the other way round.
        self._batch_lock = threading.Lock()
        self._uploads = {}  # file id -> {"meta": FileObject dict, "data": bytes, "by_client": bool}
        self._batches = {}  # batch id -> state (see _op_batch_create); dicts keep creation order
        self._batch_lines = []  # one record per answered line
        self._batch_requests = []  # HTTP log of the Files/Batch endpoints
        self._batch_faults = []  # [[operation, kind, remaining, after]]
        self._unrun_lines = 0  # lines written to error files as expired / cancelled

    # -- recording ----------------------------------------------------------------------------------------------

    @property
    def batch_requests(self):
        """Requests to the Files/Batch endpoints (same record as ``calls``, plus ``batch_fault`` when injected)."""
        with self._lock:
            return list(self._batch_requests)

    @property
    def batches_created(self):
        """Ids of the batches created, oldest first."""
        with self._batch_lock:
            return list(self._batches)

    def complete_batches_after(self, polls):
        """Batches already created see their end state at their ``polls``-th retrieve from now on
        (new batches too): a batch a stopped run left running finishes for the next run."""
        with self._batch_lock:
            self.batch_polls_to_complete = int(polls)
            for state in self._batches.values():
                state["polls_needed"] = state["polls"] + int(polls)

    def batch(self, batch_id):
        """The Batch object as the API shows it now (a copy; looking does not move the batch on)."""
        with self._batch_lock:
            return copy.deepcopy(self._batches[batch_id]["batch"])

    @property
    def uploaded_files(self):
        """FileObject dicts of the files clients uploaded (not the output / error files), oldest first."""
        with self._batch_lock:
            return [copy.deepcopy(entry["meta"]) for entry in self._uploads.values() if entry["by_client"]]

    def file_bytes(self, file_id):
        with self._batch_lock:
            return self._uploads[file_id]["data"]

    @property
    def batch_lines(self):
        """One record per answered batch line: batch_id, custom_id, line (1-based), body, status, behavior, rule,
        paid, request_id, time.  Lines that never ran (expired / cancelled) are not answered, so not here."""
        with self._lock:
            return list(self._batch_lines)

    @property
    def batch_lines_answered(self):
        with self._lock:
            return len(self._batch_lines)

    @property
    def batch_paid_lines(self):
        """Lines the real API would bill (status 200, whatever the data held), at half the live price."""
        return [line for line in self.batch_lines if line["paid"]]

    @property
    def batch_good_paid_lines(self):
        return [line for line in self.batch_lines if line["paid"] and line["behavior"] in _live().GOOD]

    def batch_stats(self):
        """Batch counterpart of ``stats()``: ``batches`` created, ``lines`` answered, ``ok`` / ``paid`` /
        ``good_paid`` / ``errors`` among them, ``unrun`` (expired or cancelled lines), ``cost`` (paid lines at half
        price, in live calls), ``by_status`` and ``by_behavior``."""
        lines = self.batch_lines
        with self._batch_lock:
            batches = len(self._batches)
        with self._lock:
            unrun = self._unrun_lines
        paid = sum(1 for line in lines if line["paid"])
        return {
            "batches": batches,
            "lines": len(lines),
            "ok": sum(1 for line in lines if line["status"] == 200),
            "paid": paid,
            "good_paid": sum(1 for line in lines if line["paid"] and line["behavior"] in _live().GOOD),
            "errors": sum(1 for line in lines if line["status"] != 200),
            "unrun": unrun,
            "cost": paid * 0.5,
            "by_status": dict(collections.Counter(line["status"] for line in lines)),
            "by_behavior": dict(collections.Counter(line["behavior"] for line in lines)),
        }

    def _reset_batch_log(self):
        """Clear the batch logs and counters (with self._lock held); files and batches stay."""
        self._batch_lines.clear()
        self._batch_requests.clear()
        self._unrun_lines = 0

    # -- faults ---------------------------------------------------------------------------------------------------

    def fail_next(self, operation, behavior="server_error", n=1, after=False):
        """The next ``n`` requests of ``operation`` (one of OPERATIONS, e.g. "batch_create", "batch_retrieve") get
        ``behavior``: a canned fault kind ("server_error", "overloaded", "rate_limit", "bad_gateway", ...) or
        "reset" (no answer).  ``after=False``: nothing happens (no batch made, no poll counted).  ``after=True``:
        the request takes effect and only its answer is lost, e.g. a batch is created the client never hears of."""
        live = _live()
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {OPERATIONS}")
        kind = behavior.kind if isinstance(behavior, live.Behavior) else str(behavior)
        if kind not in live._FAULTS and kind not in live._RAW_FAULTS and kind != "reset":
            raise ValueError(f"{kind!r} has no canned answer; use a fault kind or 'reset'")
        with self._lock:
            self._batch_faults.append([operation, kind, int(n), bool(after)])

    def fail_batch_lines(self, prompt_substring, code="request_timeout", n=1):
        """The next ``n`` batch lines whose prompt holds ``prompt_substring`` fail as the real API writes a
        line it gave up on: ``response`` null, ``error`` {code, message} in the error file; not billed."""
        with self._lock:
            self._line_faults.append([prompt_substring, str(code), int(n)])

    def _take_line_fault(self, prompt):
        with self._lock:
            for rule in self._line_faults:
                if rule[2] > 0 and rule[0] in (prompt or ""):
                    rule[2] -= 1
                    return rule[1]
        return None

    def forget_batch(self, batch_id):
        """From now on the API answers 404 for ``batch_id`` (it was deleted, or belongs to another project)."""
        with self._batch_lock:
            self._forgotten.add(batch_id)

    def _take_fault(self, operation, after):
        with self._lock:
            for rule in self._batch_faults:
                if rule[0] == operation and rule[3] == after and rule[2] > 0:
                    rule[2] -= 1
                    return rule[1]
        return None

    # -- routing --------------------------------------------------------------------------------------------------

    def _route_batch(self, method, path, query, raw, call):
        """(status, body, headers) for a Files/Batch request; body may be (bytes, content type)."""
        live = _live()
        call["batch_api"] = True  # logged in batch_requests, not calls
        operation, ident = _operation(method, path)
        if operation is None:
            return 404, live.error_body(f"Invalid URL ({method} {path})"), {}
        refused = self._check_key(call)
        if refused:
            return refused
        if ident is not None and ident in self._forgotten and operation.startswith("batch_"):
            return _no_batch(ident)
        fault = self._take_fault(operation, after=False)
        if fault is None:
            answer = getattr(self, f"_op_{operation}")(ident, query, raw, call)
            if operation == "batch_create" and self.batch_create_delay:
                time.sleep(float(self.batch_create_delay))
            fault = self._take_fault(operation, after=True)
            if fault is None:
                return answer
        call["batch_fault"] = fault
        return self._answer({}, live.Behavior(fault))

    # -- files ----------------------------------------------------------------------------------------------------

    def _op_file_create(self, ident, query, raw, call):
        live = _live()
        fields, files = _parse_multipart(call["headers"].get("content-type", ""), raw)
        if "file" not in files:
            return (
                400,
                live.error_body("Missing required parameter: 'file'.", code="missing_required_parameter", param="file"),
                {},
            )
        purpose = fields.get("purpose")
        if purpose is None:
            return (
                400,
                live.error_body(
                    "Missing required parameter: 'purpose'.", code="missing_required_parameter", param="purpose"
                ),
                {},
            )
        if purpose not in PURPOSES:
            return (
                400,
                live.error_body(f"Invalid value for purpose: {purpose!r}.", code="invalid_value", param="purpose"),
                {},
            )
        filename, data = files["file"]
        if purpose == "batch" and not filename.endswith(".jsonl"):
            # What the real API answers for e.g. a .txt (or the client's default name "upload" for raw bytes).
            return 400, live.error_body("Invalid file format for Batch API. Must be .jsonl"), {}
        with self._batch_lock:
            meta = self._store_file(filename, data, purpose, by_client=True)
        return 200, meta, {}

    def _store_file(self, filename, data, purpose, by_client=False):
        """Keep ``data`` as a file; its FileObject dict (a copy).  Call with self._batch_lock held."""
        now = int(time.time())
        meta = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(data),
            "created_at": now,
            "expires_at": now + FILE_LIFETIME if purpose in ("batch", "batch_output") else None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self._uploads[meta["id"]] = {"meta": meta, "data": bytes(data), "by_client": by_client}
        return dict(meta)

    def _op_file_list(self, ident, query, raw, call):
        purpose = query.get("purpose")
        with self._batch_lock:
            files = [
                dict(entry["meta"])
                for entry in self._uploads.values()
                if purpose is None or entry["meta"]["purpose"] == purpose
            ]
        if query.get("order", "desc") == "desc":
            files.reverse()
        return _page(files, query, default_limit=10_000, max_limit=10_000)

    def _op_file_retrieve(self, file_id, query, raw, call):
        with self._batch_lock:
            entry = self._uploads.get(file_id)
            return (200, dict(entry["meta"]), {}) if entry else _no_file(file_id)

    def _op_file_content(self, file_id, query, raw, call):
        with self._batch_lock:
            entry = self._uploads.get(file_id)
            return (200, (entry["data"], "application/octet-stream"), {}) if entry else _no_file(file_id)

    def _op_file_delete(self, file_id, query, raw, call):
        with self._batch_lock:
            if self._uploads.pop(file_id, None) is None:
                return _no_file(file_id)
        return 200, {"id": file_id, "object": "file", "deleted": True}, {}

    # -- batches --------------------------------------------------------------------------------------------------

    def _op_batch_create(self, ident, query, raw, call):
        live = _live()
        try:
            body = call["body"] = json.loads(raw or b"null")
        except ValueError:
            return 400, live.error_body("We could not parse the JSON body of your request."), {}
        if not isinstance(body, dict):
            return 400, live.error_body("The request body must be a JSON object."), {}
        for name in ("input_file_id", "endpoint", "completion_window"):
            if body.get(name) is None:
                return (
                    400,
                    live.error_body(
                        f"Missing required parameter: '{name}'.", code="missing_required_parameter", param=name
                    ),
                    {},
                )
        endpoint, window, metadata = body["endpoint"], body["completion_window"], body.get("metadata")
        if endpoint not in KNOWN_ENDPOINTS:
            return (
                400,
                live.error_body(f"Invalid value for 'endpoint': {endpoint!r}.", code="invalid_value", param="endpoint"),
                {},
            )
        if endpoint not in (BATCH_ENDPOINT, EDITS_ENDPOINT, RESPONSES_ENDPOINT):
            return (
                400,
                live.error_body(
                    f"fake-openai answers batches for {BATCH_ENDPOINT} and {EDITS_ENDPOINT} only, not {endpoint}.",
                    code="invalid_value",
                    param="endpoint",
                ),
                {},
            )
        if window != "24h":
            return (
                400,
                live.error_body(
                    f"Invalid value for 'completion_window': {window!r}. Supported values are: '24h'.",
                    code="invalid_value",
                    param="completion_window",
                ),
                {},
            )
        if metadata is not None and not _valid_metadata(metadata):
            return (
                400,
                live.error_body(
                    "Invalid 'metadata': at most 16 pairs, string keys of at most 64 "
                    "characters and string values of at most 512.",
                    code="invalid_value",
                    param="metadata",
                ),
                {},
            )
        now = int(time.time()) + int(self.batch_created_offset)
        batch = {
            "id": f"batch_{uuid.uuid4().hex}",
            "object": "batch",
            "endpoint": endpoint,
            "model": None,
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + WINDOW,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": _usage(),
            "metadata": metadata,
        }
        with self._batch_lock:
            # The input is read now (deleting the file later changes nothing); its verdict shows at the 1st retrieve.
            entries, errors = self._read_input(body["input_file_id"], endpoint)
            self._batches[batch["id"]] = {
                "batch": batch,
                "entries": entries,
                "errors": errors,
                "polls": 0,
                "answered": [],
                "polls_needed": self.batch_polls_to_complete,
                "expire_after": self.expire_batches_after_lines,
            }
            return 200, copy.deepcopy(batch), {}

    def _read_input(self, file_id, endpoint):
        """(entries, errors) for the batch input ``file_id``: the parsed lines, or the reasons the batch fails
        (BatchError dicts: code, message, param, line).  Call with self._batch_lock held."""
        entry = self._uploads.get(file_id)
        if entry is None:
            return [], [_batch_error("invalid_input_file", f"No such File object: {file_id}.", "input_file_id")]
        purpose = entry["meta"]["purpose"]
        if purpose != "batch":
            return [], [
                _batch_error(
                    "invalid_input_file", f"The input file must have purpose 'batch', not {purpose!r}.", "input_file_id"
                )
            ]
        data = entry["data"]
        if len(data) > self.batch_max_bytes:
            return [], [
                _batch_error(
                    "file_too_large",
                    f"The input file is larger than the maximum of {self.batch_max_bytes} bytes.",
                    "input_file_id",
                )
            ]
        lines = data.split(b"\n")
        if lines and not lines[-1].strip():
            lines.pop()  # the newline ending the last line
        if not lines:
            return [], [_batch_error("empty_file", "The input file is empty.", "input_file_id")]
        if len(lines) > self.batch_max_lines:
            return [], [
                _batch_error(
                    "too_many_tasks",
                    f"The input file has {len(lines)} requests; the maximum is {self.batch_max_lines}.",
                    "input_file_id",
                )
            ]
        entries, errors, seen, model = [], [], set(), None
        default_model = self.default_model
        for number, line in enumerate(lines, 1):
            entry, problem = _read_line(line, endpoint, seen)
            if problem:
                errors.append({**problem, "line": number})
                continue
            line_model = _live()._field(entry["body"], "model", default_model)
            if model is None:
                model = line_model
            elif line_model != model:
                errors.append(
                    _batch_error(
                        "model_mismatch",
                        f"All requests in a batch must use the same model: {line_model!r} is not {model!r}.",
                        "body.model",
                        number,
                    )
                )
                continue
            entries.append({**entry, "line": number})
        return entries, errors

    def _op_batch_list(self, ident, query, raw, call):
        with self._batch_lock:
            batches = [copy.deepcopy(state["batch"]) for state in reversed(self._batches.values())]
        return _page(batches, query, default_limit=20, max_limit=100)

    def _op_batch_retrieve(self, batch_id, query, raw, call):
        with self._batch_lock:
            state = self._batches.get(batch_id)
            if state is None:
                return _no_batch(batch_id)
            self._advance(state)
            return 200, copy.deepcopy(state["batch"]), {}

    def _op_batch_cancel(self, batch_id, query, raw, call):
        with self._batch_lock:
            state = self._batches.get(batch_id)
            if state is None:
                return _no_batch(batch_id)
            batch = state["batch"]
            if batch["status"] in CANCELLABLE:
                batch["status"], batch["cancelling_at"] = "cancelling", int(time.time())
            elif batch["status"] != "cancelling":
                return 400, _live().error_body(f"Cannot cancel a batch with status '{batch['status']}'."), {}
            return 200, copy.deepcopy(batch), {}

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def _advance(self, state):
        """Move a batch on by one retrieve (with self._batch_lock held; see the module docstring)."""
        batch, now = state["batch"], int(time.time())
        if batch["status"] in TERMINAL:
            return
        if batch["status"] == "cancelling":
            self._finish(state, "cancelled", now)
            return
        state["polls"] += 1
        entries = state["entries"]
        if batch["status"] == "validating":
            if state["errors"]:
                batch.update(status="failed", failed_at=now, errors={"object": "list", "data": state["errors"]})
                return
            batch.update(
                status="in_progress",
                in_progress_at=now,
                model=_live()._field(entries[0]["body"], "model", self.default_model),
            )
            batch["request_counts"]["total"] = len(entries)
        budget = len(entries) if state["expire_after"] is None else min(len(entries), int(state["expire_after"]))
        polls, needed = state["polls"], state["polls_needed"]
        if polls >= needed:
            self._answer_lines(state, budget)
            if batch["finalizing_at"] is None:
                batch["finalizing_at"] = now
            self._finish(state, "expired" if budget < len(entries) else "completed", now)
        elif polls == needed - 1:
            self._answer_lines(state, budget)
            batch.update(status="finalizing", finalizing_at=now)
        else:
            self._answer_lines(state, budget * polls // (needed - 1))

    def _answer_lines(self, state, upto):
        """Answer the entries not yet answered, up to index ``upto`` (with self._batch_lock held)."""
        batch = state["batch"]
        counts, usage = batch["request_counts"], batch["usage"]
        for entry in state["entries"][len(state["answered"]) : upto]:
            code = self._take_line_fault((entry["body"] or {}).get("prompt"))
            if code is not None:  # given up on: in the error file, not billed
                line = {
                    "id": f"batch_req_{uuid.uuid4().hex}",
                    "custom_id": entry["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": f"This request failed ({code}); it was not billed."},
                }
                state["answered"].append((False, line))
                counts["failed"] += 1
                continue
            status, body, record = self._answer_line(entry)
            record["batch_id"] = batch["id"]
            with self._lock:
                self._batch_lines.append(record)
            line = {
                "id": f"batch_req_{uuid.uuid4().hex}",
                "custom_id": entry["custom_id"],
                "response": {"status_code": status, "request_id": record["request_id"], "body": body},
                "error": None,
            }
            state["answered"].append((status == 200, line))
            counts["completed" if status == 200 else "failed"] += 1
            if status == 200:
                for name in ("input_tokens", "output_tokens", "total_tokens"):
                    usage[name] += body["usage"][name]

    def _answer_line(self, entry):
        """(status, body, record) for one line, by the live endpoint's rules (see the module docstring)."""
        live, body = _live(), entry["body"]
        record = {
            "custom_id": entry["custom_id"],
            "line": entry["line"],
            "body": body,
            "behavior": None,
            "rule": None,
            "request_id": f"req_{uuid.uuid4().hex}",
            "time": time.time(),
        }
        if entry.get("url") == RESPONSES_ENDPOINT:  # a prompt written by a chat model, as live
            refusal = live.real.check_responses(body)
            if refusal is not None:
                status, answer = refusal.status, refusal.body
            else:
                behavior, record["rule"] = self._pick(body["input"])
                kind = record["behavior"] = behavior.kind
                if kind in live._FAULTS:
                    status, answer, _ = self._answer(body, behavior, record["request_id"])
                else:
                    status, answer = 200, live.real.responses_answer(body, "resp_" + record["request_id"][4:], 0)
            record.update(status=status, paid=status == 200)
            return status, answer, record
        problem = None
        if "images" in body or "mask" in body:  # an edit line: its pictures checked, then answered alike
            body, record["images"], record["mask"], problem = live.edit_json(body)
        settings, problem = (None, problem) if problem else self._validate(body)
        if problem:
            status, answer, _ = problem
        else:
            behavior, record["rule"] = self._pick(body["prompt"])
            kind = record["behavior"] = behavior.kind
            if kind in live._FAULTS:
                status, answer, _ = self._answer(body, behavior, record["request_id"], settings)
            elif kind in _NO_JSON_ANSWER:
                status, answer, _ = self._answer(body, live.Behavior("server_error"))
            else:  # a 200 as live, bad data included; "slow" does not sleep
                status, answer = 200, self._success(body, kind, settings)
        record.update(status=status, paid=status == 200)
        return status, answer, record

    def _finish(self, state, status, now):
        """End a batch in ``status``: write its output and error files (with self._batch_lock held)."""
        batch, answered = state["batch"], state["answered"]
        unrun = state["entries"][len(answered) :] if batch["in_progress_at"] else []
        output = [line for ok, line in answered if ok]
        errors = [line for ok, line in answered if not ok]
        if unrun:
            code, message = _UNRUN[status]
            errors += [
                {
                    "id": f"batch_req_{uuid.uuid4().hex}",
                    "custom_id": entry["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": message},
                }
                for entry in unrun
            ]
            batch["request_counts"]["failed"] += len(unrun)
            with self._lock:
                self._unrun_lines += len(unrun)
        if self.shuffle_batch_output:
            rng = random.Random(batch["id"])
            for lines in (output, errors):
                before = list(lines)
                rng.shuffle(lines)
                if len(lines) > 1 and lines == before:  # never by chance in input order
                    lines.append(lines.pop(0))
        for key, kind, lines in (("output_file_id", "output", output), ("error_file_id", "error", errors)):
            if lines:  # no lines, no file: the id stays null
                data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
                batch[key] = self._store_file(f"batch_{batch['id']}_{kind}.jsonl", data, "batch_output")["id"]
        batch["status"] = status
        batch[f"{status}_at"] = now


def _live():
    """The fake_openai module (imported late: it imports this one)."""
    from . import fake_openai

    return fake_openai


def _operation(method, path):
    """(operation, id or None) for a Files/Batch request, (None, None) for an unknown one."""
    parts = path.strip("/").split("/")[1:]  # drop "v1"
    routes = {
        ("POST", "files", 1): "file_create",
        ("GET", "files", 1): "file_list",
        ("GET", "files", 2): "file_retrieve",
        ("DELETE", "files", 2): "file_delete",
        ("POST", "batches", 1): "batch_create",
        ("GET", "batches", 1): "batch_list",
        ("GET", "batches", 2): "batch_retrieve",
    }
    operation = routes.get((method, parts[0] if parts else None, len(parts)))
    if len(parts) == 3 and (method, parts[0], parts[2]) == ("GET", "files", "content"):
        operation = "file_content"
    elif len(parts) == 3 and (method, parts[0], parts[2]) == ("POST", "batches", "cancel"):
        operation = "batch_cancel"
    if operation is None or (len(parts) > 1 and not parts[1]):
        return None, None
    return operation, parts[1] if len(parts) > 1 else None


def _parse_multipart(content_type, raw):
    """({field: str}, {field: (filename, bytes)}) of a multipart/form-data body; both empty if it is not one."""
    if not content_type.startswith("multipart/form-data"):
        return {}, {}
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields, files = {}, {}
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), data)
        else:
            fields[name] = data.decode("utf-8")
    return fields, files


def _read_line(line, endpoint, seen):
    """(entry, None) for a good input line, entry = {custom_id, body}; else (None, the BatchError dict, no line
    number yet, that fails the batch).  ``seen`` collects the custom_ids."""
    try:
        request = json.loads(line)
    except ValueError:
        return None, _batch_error("invalid_json_line", "This line is not parseable as valid JSON.")
    if not isinstance(request, dict):
        return None, _batch_error("invalid_json_line", "This line is not a JSON object.")
    for name in ("custom_id", "method", "url", "body"):
        if request.get(name) is None:
            return None, _batch_error("missing_required_parameter", f"Missing required parameter: '{name}'.", name)
    custom_id = request["custom_id"]
    if not isinstance(custom_id, str):
        return None, _batch_error("invalid_value", "Invalid 'custom_id': expected a string.", "custom_id")
    if custom_id in seen:
        return None, _batch_error(
            "duplicate_custom_id",
            "The custom_id for this request is a duplicate of another "
            "request. The custom_id parameter must be unique for each request in a batch.",
            "custom_id",
        )
    seen.add(custom_id)
    if request["method"] != "POST":
        return None, _batch_error(
            "invalid_value", f"Invalid 'method': {request['method']!r}. Only POST is supported.", "method"
        )
    if request["url"] != endpoint:
        return None, _batch_error(
            "url_mismatch",
            f"The URL {request['url']!r} of this request does not match the endpoint {endpoint!r} of the batch.",
            "url",
        )
    if not isinstance(request["body"], dict):
        return None, _batch_error("invalid_value", "Invalid 'body': expected an object.", "body")
    return {"custom_id": custom_id, "body": request["body"], "url": request["url"]}, None


def _batch_error(code, message, param=None, line=None):
    return {"code": code, "message": message, "param": param, "line": line}


def _valid_metadata(metadata):
    return (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(
            isinstance(key, str) and len(key) <= 64 and isinstance(value, str) and len(value) <= 512
            for key, value in metadata.items()
        )
    )


def _usage():
    return {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }


def _page(items, query, default_limit, max_limit):
    """A cursor page of ``items`` (already in list order), as the real list endpoints answer."""
    try:
        limit = int(query.get("limit", default_limit))
    except ValueError:
        limit = 0
    if not 1 <= limit <= max_limit:
        return (
            400,
            _live().error_body(
                f"Invalid 'limit': {query.get('limit')!r}. Expected an integer from 1 to {max_limit}.",
                code="invalid_value",
                param="limit",
            ),
            {},
        )
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return (
        200,
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(items) > limit,
        },
        {},
    )


def _no_file(file_id):
    return 404, _live().error_body(f"No such File object: {file_id}", param="id"), {}


def _no_batch(batch_id):
    return 404, _live().error_body(f"No batch found with id '{batch_id}'.", code="not_found"), {}


def parse_query(raw_query):
    """{name: last value} of a URL query string."""
    return {name: values[-1] for name, values in parse_qs(raw_query, keep_blank_values=True).items()}
