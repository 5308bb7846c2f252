"""A stand-in for the Gemini Developer API's image generation on loopback, for tests.

It speaks the REST API that google-genai 3.x calls: ``POST /{version}/models/{model}:generateContent``
with the key in the ``x-goog-api-key`` header (the SDK's way; a key anywhere else is not accepted),
reached through the SDK's base URL (``HttpOptions(base_url=...)`` or ``GOOGLE_GEMINI_BASE_URL``).
Answers are shaped as the real API's (camelCase JSON): ``candidates[].content.parts[]`` with a text
part, a "thought" part carrying a draft image, then the image as ``inlineData`` -- by default JPEG
bytes labelled ``image/png`` (the real API's habit), one solid colour from sha256(prompt) (see
:func:`expected_color`) -- and ``usageMetadata`` with token counts per modality (1120 image tokens
for 1K/2K, 2000 for 4K, as Google prices them).

Behaviours, chosen per prompt substring (``set_behavior`` / ``fail_times``) or for all
(``default_behavior``), each with the real API's exact body:

- ``ok``; ``png`` (a real PNG); ``image_safety`` / ``prohibited`` / ``no_image`` (HTTP 200, no image,
  ``finishReason`` IMAGE_SAFETY -- a candidate with no content, a ``finishMessage`` -- /
  IMAGE_PROHIBITED_CONTENT / NO_IMAGE, with a text part); ``blocked`` (HTTP 200,
  ``promptFeedback.blockReason`` PROHIBITED_CONTENT, no candidates)
- ``rate_limit`` (429 RESOURCE_EXHAUSTED with ``google.rpc.RetryInfo`` ``retryDelay`` =
  ``retry_delay``, no Retry-After header); ``daily_quota`` (429 with a per-day ``QuotaFailure``)
- ``server_error`` (500 INTERNAL), ``unavailable`` (503 UNAVAILABLE), ``timeout`` (504 DEADLINE_EXCEEDED)
- ``permission_denied`` (403), ``bad_request`` (400 INVALID_ARGUMENT about the prompt, no field)

Batch mode: ``POST /v1beta/models/{model}:batchGenerateContent`` with inline requests (each
``{"request": ..., "metadata": {"key": ...}}``) creates a batch (an operation ``batches/<id>`` whose
``metadata.state`` is ``BATCH_STATE_PENDING``); ``GET /v1beta/batches/<id>`` ends it after
``batch_polls_to_complete`` polls with each line answered by the same rules as live calls, inline in
``metadata.output.inlinedResponses.inlinedResponses`` and the operation's ``response`` (``output_in``:
one of them only), each line a ``response`` or an ``error`` -- a google.rpc.Status, whose ``code``
is the gRPC code (14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED, ...), not the HTTP one; ``shuffle_results``
puts them out of order. ``GET /v1beta/batches`` lists them ``list_page_size`` a page (``nextPageToken``),
newest first (``list_oldest_first``); ``POST /v1beta/batches/<id>:cancel`` cancels one (``cancelled``).
A create needs ``batch.displayName`` and each line's ``request.contents``, under 20 MB in all.
``expire_next_batches`` makes that many batches end EXPIRED with no line run; ``fail_batch_times``
fails the next calls to one batch endpoint (create, get, list, cancel, download) with an error
behaviour; ``lose_create_answers`` creates that many batches but answers 503 (the answer lost). A
request (live or a batch line) with a field the API does not have is answered 400 "Unknown name".
Batch lines are logged apart (``batch_lines``; the batch endpoints'
requests in ``batch_requests``): ``calls`` and ``paid_calls`` only ever count live calls;
``batch_creates`` counts the batches created. ``results_as_file`` puts the results in a JSONL file
(``output.responsesFile``, one ``{"key", "response" | "error"}`` a line, served at
``GET /v1beta/files/<name>:download?alt=media``) instead.

A wrong or missing key answers 400 INVALID_ARGUMENT with ErrorInfo ``API_KEY_INVALID``; a model the
account does not have answers 404 NOT_FOUND; an ``imageConfig`` value the model does not take answers
400 INVALID_ARGUMENT naming the field. ``calls`` records every request (path, model, prompt, the
generation config, where the key came); ``paid_calls`` the ones answered 200 (the real API bills them).
Standard library + Pillow only.
"""

import base64
import hashlib
import io
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from PIL import Image

from .loopback import LoopbackServer
from .openai_models import written_prompt

RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
MODELS = {  # model -> (image sizes, aspect ratios) it takes
    "gemini-nano-banana-2.1": (["1K", "2K", "4K"], RATIOS + ["1:4", "4:1", "1:8", "8:1"]),
    "gemini-3-pro-image": (["1K", "2K", "4K"], RATIOS),
    "gemini-3.1-flash-lite-image": (["1K"], RATIOS),
}
IMAGE_TOKENS = {"1K": 1120, "2K": 1120, "4K": 2000}
INLINE_LIMIT = 20 * 1024 * 1024  # a batch's inline requests: 20 MB in all
BEHAVIORS = (
    "ok",
    "png",
    "image_safety",
    "prohibited",
    "no_image",
    "blocked",
    "rate_limit",
    "daily_quota",
    "server_error",
    "unavailable",
    "timeout",
    "permission_denied",
    "bad_request",
)
_REFUSALS = {"image_safety": "IMAGE_SAFETY", "prohibited": "IMAGE_PROHIBITED_CONTENT", "no_image": "NO_IMAGE"}
# A batch line's error is a google.rpc.Status: its code is the gRPC canonical code, not the HTTP one,
# and it has no "status" name (the HTTP error body's "code"/"status" are the REST mapping of it).
GRPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}


# Text models (Image.Batch's describe:): gemini-3-flash-preview, $0.50 / $3.00 per million tokens (Google's pricing
# page as quoted by factquire.com 2026-07-04; checked 2026-12-04).
TEXT_MODELS = {"gemini-3-flash-preview"}


def expected_color(prompt):
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return tuple(digest[:3])


def render(prompt, fmt="JPEG", size=(64, 64)):
    buffer = io.BytesIO()
    Image.new("RGB", size, expected_color(prompt)).save(buffer, format=fmt, quality=100)
    return buffer.getvalue()


def inline_images(contents):
    """[(mime type, bytes)] of the inline_data parts of a request's contents (reference pictures)."""
    found = []
    for content in contents or ():
        for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
            blob = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if blob:
                # the API takes standard or URL-safe base64 (the SDK sends the URL-safe kind)
                text = blob.get("data", "").replace("-", "+").replace("_", "/")
                data = base64.b64decode(text + "=" * (-len(text) % 4))
                found.append((blob.get("mimeType") or blob.get("mime_type"), data))
    return found


# The fields a generateContent request may have on the Gemini Developer API (v1beta), by object;
# proto JSON takes each in lowerCamel or snake_case.
FIELDS = {
    "request": {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig"}
    | {"cachedContent", "model"},
    "generationConfig": {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema"}
    | {"responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed"}
    | {"presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers"}
    | {"speechConfig", "thinkingConfig", "imageConfig", "mediaResolution"},
    "imageConfig": {"aspectRatio", "imageSize"},
}


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def unknown_fields(body):
    """The first field of a generateContent request the API does not have ("generationConfig.foo"), or None."""
    objects = [("request", body, "")]
    config = body.get("generationConfig") or body.get("generation_config")
    if isinstance(config, dict):
        objects.append(("generationConfig", config, "generation_config."))
        image = config.get("imageConfig") or config.get("image_config")
        if isinstance(image, dict):
            objects.append(("imageConfig", image, "generation_config.image_config."))
    for kind, fields, where in objects:
        for name in fields:
            if _camel(name) not in FIELDS[kind]:
                return where + name
    return None


def error_body(code, status, message, details=()):
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def _retry_info(delay):
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def _quota(quota_id, value="10"):
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global"},
                "quotaValue": value,
            }
        ],
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-gemini"
    sys_version = ""
    timeout = 60

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        self.server.fake._handle(self)

    def do_GET(self):
        self.server.fake._handle(self)


class FakeGemini(LoopbackServer):
    server_class, handler_class = _Server, _Handler
    thread_name, owner_attr = "fake-gemini", "fake"

    def __init__(self, api_key, host="127.0.0.1", port=0, models=None, retry_delay="0.05s", label="image/png"):
        self.api_key, self.host, self._port = api_key, host, port
        self.models = dict(MODELS) if models is None else {m: MODELS[m] for m in models}
        self.retry_delay, self.label = retry_delay, label
        self.default_behavior = "ok"
        self._rules, self._counts = [], {}
        self._lock = threading.Lock()
        self.calls = []
        self.batches = {}  # id -> {"operation": ..., "requests": [...], "polls": n}
        self.batch_lines, self.batch_creates, self.batch_requests = [], 0, []
        self.batch_polls_to_complete = 2
        self.expire_next_batches = 0
        self.fail_next_batches = []  # [(gRPC code, message)]: the next batches end FAILED with that error
        self.results_as_file = False  # True: results in a JSONL file (output.responsesFile), not inline
        self.files = {}
        self.drop_metadata = False  # True: inline results without the requests' metadata (in order)
        self.download_path = "both"  # "sdk": files at /v1beta/files/<id>:download only; "docs": /download/v1beta/...
        self.output_in = "both"  # where a finished batch's output is: "metadata" (.output), "response", or both
        self.shuffle_results = False  # True: results in the reverse of the requests' order (each with its key)
        self.list_oldest_first = False  # True: batches.list oldest first (else newest first)
        self.list_page_size = 2  # batches.list answers this many a page at most (nextPageToken for the rest)
        self.cancelled = []  # names of the batches cancelled (POST batches/<id>:cancel)
        self._batch_faults = []  # [kind, behavior, times left] (fail_batch_times)
        self.lose_create_answers = 0  # that many batches are created but answered 503 (the answer lost)

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def paid_calls(self):
        return [c for c in self.calls if c["status"] == 200]

    def calls_for(self, prompt_part):
        return [c for c in self.calls if prompt_part in (c.get("prompt") or "")]

    def set_behavior(self, prompt_part, behavior):
        """Every request whose prompt contains ``prompt_part`` gets ``behavior``."""
        assert behavior in BEHAVIORS, behavior
        self._rules.insert(0, (prompt_part, behavior, None))

    def fail_times(self, prompt_part, behavior, n):
        """The first ``n`` requests whose prompt contains ``prompt_part`` get ``behavior``."""
        assert behavior in BEHAVIORS, behavior
        self._rules.insert(0, (prompt_part, behavior, n))

    def _pick(self, prompt):
        with self._lock:
            for index, (part, behavior, limit) in enumerate(self._rules):
                if part in prompt:
                    if limit is None:
                        return behavior
                    used = self._counts.get(index, 0)
                    if used < limit:
                        self._counts[index] = used + 1
                        return behavior
        return self.default_behavior

    # -- HTTP ---------------------------------------------------------------------------------

    def _handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        url = urlparse(handler.path)
        call = {
            "method": handler.command,
            "path": url.path,
            "key_in_header": handler.headers.get("x-goog-api-key") == self.api_key,
            "query": url.query,
            "key_in_query": "key" in parse_qs(url.query),
            "key_in_body": self.api_key.encode() in raw,
            "user_agent": handler.headers.get("user-agent", ""),
        }
        fault = self._batch_fault(handler, url.path)
        if fault:
            call.update(kind="batch", fault=True)
        status, body = fault or self._route(handler, url.path, raw, call)
        if call.get("kind") == "batch" and status == 200 and call.pop("lose_answer", False):
            status, body = self._answer("unavailable", None, "", None)  # made, but the answer is lost
        call["status"] = status
        with self._lock:
            (self.batch_requests if call.get("kind") == "batch" else self.calls).append(call)
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def fail_batch_times(self, kind, behavior, n):
        """The next ``n`` requests to the batch endpoint ``kind`` (create, get, list, cancel, download)
        get ``behavior`` (an error behaviour: rate_limit, unavailable, ...), without doing anything."""
        assert behavior in BEHAVIORS and kind in ("create", "get", "list", "cancel", "download"), (kind, behavior)
        self._batch_faults.append([kind, behavior, n])

    @staticmethod
    def _batch_kind(method, path):
        parts = path.strip("/").split("/")
        if parts[-1].endswith(":batchGenerateContent"):
            return "create"
        if parts[-1].endswith(":download"):
            return "download"
        if parts[1:2] == ["batches"]:
            if len(parts) == 2:
                return "list"
            return "cancel" if parts[-1].endswith(":cancel") else "get"
        return None

    def _batch_fault(self, handler, path):
        kind = self._batch_kind(handler.command, path)
        with self._lock:
            for fault in self._batch_faults:
                if fault[0] == kind and fault[2] > 0:
                    fault[2] -= 1
                    return self._answer(fault[1], None, "", None)
        return None

    def _route(self, handler, path, raw, call):
        if handler.headers.get("x-goog-api-key") != self.api_key:
            return 400, error_body(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        parts = path.strip("/").split("/")
        if parts[1:2] == ["batches"]:
            call["kind"] = "batch"
            return self._batch_route(handler, parts)
        if parts[-2:-1] == ["files"] and parts[-1].endswith(":download") and handler.command == "GET":
            call["kind"] = "batch"
            docs = parts[0] == "download"  # Google's REST docs: /download/v1beta/files/<id>:download?alt=media
            if self.download_path != "both" and docs != (self.download_path == "docs"):
                return 404, error_body(404, "NOT_FOUND", f"Method not found: {path}")
            name = "files/" + parts[-1][: -len(":download")]
            if name not in self.files:
                return 404, error_body(404, "NOT_FOUND", f"File {name} not found.")
            return 200, self.files[name]
        if handler.command != "POST" or len(parts) != 3 or parts[1] != "models" or ":" not in parts[2]:
            return 404, error_body(404, "NOT_FOUND", f"Method not found: {path}")
        version = parts[0]
        model, method = parts[2].split(":", 1)
        call.update(version=version, model=model)
        if method == "batchGenerateContent":
            call["kind"] = "batch"
            return self._create_batch(version, model, raw, call)
        if method != "generateContent":
            return 404, error_body(404, "NOT_FOUND", f"Method not found: {method}")
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, error_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        prompt = " ".join(
            p["text"]
            for c in body.get("contents") or ()
            for p in c.get("parts") or ()
            if isinstance(p, dict) and "text" in p
        )
        config = body.get("generationConfig") or {}
        call.update(prompt=prompt, generation_config=config, images=inline_images(body.get("contents")))
        unknown = unknown_fields(body)
        if unknown:  # as the API answers a field it does not have (e.g. imageConfig.outputMimeType)
            return 400, error_body(
                400, "INVALID_ARGUMENT", f'Invalid JSON payload received. Unknown name "{unknown}": Cannot find field.'
            )
        if version == "v1beta" and model in TEXT_MODELS:
            return self._write(model, prompt, body, call)
        if version != "v1beta" or model not in self.models:
            return 404, error_body(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for generateContent. "
                "Call ListModels to see the list of available models and their supported methods.",
            )
        sizes, ratios = self.models[model]
        image_config = config.get("imageConfig") or {}
        size = image_config.get("imageSize", "1K")
        ratio = image_config.get("aspectRatio", "1:1")
        if size not in sizes:
            return 400, error_body(
                400,
                "INVALID_ARGUMENT",
                f"* GenerateContentRequest.generation_config.image_config.image_size: unsupported value {size!r}",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "generation_config.image_config.image_size"}],
                    }
                ],
            )
        if ratio not in ratios:
            return 400, error_body(
                400,
                "INVALID_ARGUMENT",
                f"* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported value {ratio!r}",
            )
        return self._generate(model, prompt, config, call)

    def _write(self, model, text, body, call):
        """A text answer (Image.Batch's describe:): the prompt written from ``text`` (the same deterministic
        writer as the OpenAI stand-in's), with the instructions as ``systemInstruction``."""
        call["kind"] = "text"
        modalities = (body.get("generationConfig") or {}).get("responseModalities")
        if modalities not in (None, ["TEXT"]):
            return 400, error_body(400, "INVALID_ARGUMENT", f"* {model} supports only text output")
        system = " ".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or ())
        call["system_instruction"] = system
        behavior = self._pick(text)
        call["behavior"] = behavior
        if behavior == "blocked":
            return self._answer(behavior, model, text, "1K")
        if behavior not in ("ok", "png"):
            return self._answer(behavior, model, text, "1K")
        written = written_prompt(text)
        tokens_in, tokens_out = -(-(len(system) + len(text)) // 4), -(-len(written) // 4)
        return 200, {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": written}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": tokens_in,
                "candidatesTokenCount": tokens_out,
                "totalTokenCount": tokens_in + tokens_out,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens_in}],
            },
            "modelVersion": model,
            "responseId": f"text-{len(self.calls)}",
        }

    @property
    def text_calls(self):
        """Paid text calls (prompts written)."""
        return [c for c in self.paid_calls if c.get("kind") == "text"]

    @property
    def image_calls(self):
        """Paid image calls."""
        return [c for c in self.paid_calls if c.get("kind") != "text"]

    def _generate(self, model, prompt, config, call):
        sizes, ratios = self.models[model]
        image_config = config.get("imageConfig") or {}
        size = image_config.get("imageSize", "1K")
        if size not in sizes or image_config.get("aspectRatio", "1:1") not in ratios:
            return 400, error_body(400, "INVALID_ARGUMENT", "* GenerateContentRequest.generation_config.image_config")
        behavior = self._pick(prompt)
        call["behavior"] = behavior
        return self._answer(behavior, model, prompt, size)

    # -- batches ------------------------------------------------------------------------------

    def _create_batch(self, version, model, raw, call):
        if version != "v1beta" or (model not in self.models and model not in TEXT_MODELS):
            return 404, error_body(404, "NOT_FOUND", f"models/{model} is not found for API version {version}")
        batch = (json.loads(raw) or {}).get("batch") or {}
        requests = ((batch.get("inputConfig") or {}).get("requests") or {}).get("requests") or []
        if not batch.get("displayName"):
            return 400, error_body(
                400, "INVALID_ARGUMENT", "* BatchGenerateContentRequest.batch.display_name: required"
            )
        if not requests or not all(
            isinstance(r.get("request"), dict) and r["request"].get("contents") for r in requests
        ):
            return 400, error_body(
                400, "INVALID_ARGUMENT", "* BatchGenerateContentRequest.batch.input_config.requests: contents required"
            )
        if len(raw) > INLINE_LIMIT:
            return 400, error_body(400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 20971520 bytes.")
        with self._lock:
            self.batch_creates += 1
            if self.lose_create_answers:
                self.lose_create_answers -= 1
                call["lose_answer"] = True
            name = f"batches/{uuid.uuid4().hex[:16]}"
            operation = {
                "name": name,
                "metadata": {
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
                    "name": name,
                    "model": f"models/{model}",
                    "displayName": batch.get("displayName", ""),
                    "createTime": f"2026-11-27T12:00:{len(self.batches) % 60:02d}Z",
                    "state": "BATCH_STATE_PENDING",
                    "batchStats": {"requestCount": str(len(requests)), "pendingRequestCount": str(len(requests))},
                },
            }
            self.batches[name] = {"operation": operation, "requests": requests, "polls": 0, "model": model}
        return 200, operation

    def _batch_route(self, handler, parts):
        if handler.command == "GET" and len(parts) == 2:
            query = parse_qs(urlparse(handler.path).query)
            size = min(int((query.get("pageSize") or ["50"])[0]), self.list_page_size)
            start = int((query.get("pageToken") or ["0"])[0])
            operations = [b["operation"] for b in self.batches.values()]  # (the API promises no order)
            operations = operations if self.list_oldest_first else operations[::-1]
            page = {"operations": operations[start : start + size]}
            if start + size < len(operations):
                page["nextPageToken"] = str(start + size)
            return 200, page
        name = "/".join(parts[1:3])
        cancel = name.endswith(":cancel")
        name = name.removesuffix(":cancel")
        if name not in self.batches or handler.command != ("POST" if cancel else "GET"):
            return 404, error_body(404, "NOT_FOUND", f"Requested entity was not found: {name}")
        batch = self.batches[name]
        if cancel:
            with self._lock:
                self.cancelled.append(name)
                metadata = batch["operation"]["metadata"]
                if metadata["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                    metadata["state"] = "BATCH_STATE_CANCELLED"
                    batch["operation"]["done"] = True
            return 200, {}
        with self._lock:
            batch["polls"] += 1
            metadata, finish = batch["operation"]["metadata"], False
            if metadata["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING") and not batch.get("finishing"):
                if batch["polls"] < self.batch_polls_to_complete:
                    metadata["state"] = "BATCH_STATE_RUNNING"
                elif self.expire_next_batches:
                    self.expire_next_batches -= 1
                    metadata["state"] = "BATCH_STATE_EXPIRED"
                    batch["operation"]["done"] = True
                elif self.fail_next_batches:  # the whole batch failed, no line run: a google.rpc.Status
                    code, message = self.fail_next_batches.pop(0)
                    metadata["state"] = "BATCH_STATE_FAILED"
                    batch["operation"].update(done=True, error={"code": code, "message": message})
                else:
                    finish = batch["finishing"] = True
        if finish:
            self._finish(batch)
        return 200, batch["operation"]

    def _finish(self, batch):
        answers = []
        for line in batch["requests"]:
            request = line.get("request") or {}
            prompt = " ".join(
                p["text"] for c in request.get("contents") or () for p in c.get("parts") or () if "text" in p
            )
            record = {"prompt": prompt, "metadata": line.get("metadata"), "model": batch["model"]}
            record["images"] = inline_images(request.get("contents"))
            unknown = unknown_fields(request)
            if unknown:
                status, body = 400, error_body(400, "INVALID_ARGUMENT", f'Unknown name "{unknown}": Cannot find field.')
            elif batch["model"] in TEXT_MODELS:  # prompts written by a chat model, as live
                status, body = self._write(batch["model"], prompt, request, record)
            else:
                status, body = self._generate(batch["model"], prompt, request.get("generationConfig") or {}, record)
            record["status"] = status
            with self._lock:
                self.batch_lines.append(record)
            item = {} if self.drop_metadata else {"metadata": line.get("metadata")}
            if status == 200:
                item["response"] = body
            else:
                error = body["error"]
                item["error"] = {"code": GRPC_CODES[error["status"]], "message": error["message"]}
                if error.get("details"):
                    item["error"]["details"] = error["details"]
            answers.append(item)
        if self.shuffle_results:  # the API says "in the same order"; a key in each line says which
            answers.reverse()
        output = {"inlinedResponses": {"inlinedResponses": answers}}
        if self.results_as_file:
            name = f"files/batch-{uuid.uuid4().hex[:12]}"
            lines = [{"key": (a.pop("metadata", None) or {}).get("key"), **a} for a in answers]
            self.files[name] = "".join(json.dumps(line) + "\n" for line in lines)
            output = {"responsesFile": name}
        metadata = batch["operation"]["metadata"]
        metadata["state"] = "BATCH_STATE_SUCCEEDED"
        if self.output_in in ("both", "metadata"):
            metadata["output"] = output
        metadata["batchStats"] = {
            "requestCount": str(len(answers)),
            "successfulRequestCount": str(sum(1 for a in answers if "response" in a)),
            "failedRequestCount": str(sum(1 for a in answers if "error" in a)),
        }
        batch["operation"]["done"] = True
        if self.output_in in ("both", "response"):
            kind = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
            batch["operation"]["response"] = {"@type": kind} | output

    def _answer(self, behavior, model, prompt, size):
        if behavior == "rate_limit":
            return 429, error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [_quota("GenerateRequestsPerMinutePerProjectPerModel"), _retry_info(self.retry_delay)],
            )
        if behavior == "daily_quota":
            return 429, error_body(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [_quota("GenerateRequestsPerDayPerProjectPerModel"), _retry_info("53s")],
            )
        simple = {
            "server_error": (500, "INTERNAL", "An internal error has occurred. Please retry or report."),
            "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            "timeout": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
            "permission_denied": (
                403,
                "PERMISSION_DENIED",
                "Your API key was reported as leaked. Please use another API key.",
            ),
            "bad_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        }
        if behavior in simple:
            code, status, message = simple[behavior]
            return code, error_body(code, status, message)
        prompt_tokens = max(len(prompt) // 4, 1)
        usage = {
            "promptTokenCount": prompt_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            "totalTokenCount": prompt_tokens,
        }
        answer = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        if behavior == "blocked":
            answer.update(promptFeedback={"blockReason": "PROHIBITED_CONTENT"}, usageMetadata=usage)
            return 200, answer
        if behavior in _REFUSALS:
            candidate = {"finishReason": _REFUSALS[behavior], "index": 0}
            if behavior == "image_safety":  # no content at all, a finishMessage instead
                candidate["finishMessage"] = "Unable to show the generated image: it may violate Google's policies."
            else:
                candidate["content"] = {"role": "model", "parts": [{"text": "I can't make that image."}]}
            usage.pop("totalTokenCount")  # usageMetadata as sent for a refusal: prompt tokens only
            answer.update(candidates=[candidate], usageMetadata=usage)
            return 200, answer
        image = render(prompt, "PNG" if behavior == "png" else "JPEG")
        draft = base64.b64encode(render("draft: " + prompt)).decode()
        tokens, thoughts = IMAGE_TOKENS[size], 120
        usage.update(
            candidatesTokenCount=tokens,
            candidatesTokensDetails=[{"modality": "IMAGE", "tokenCount": tokens}],
            thoughtsTokenCount=thoughts,
            totalTokenCount=prompt_tokens + tokens + thoughts,
        )
        answer.update(
            candidates=[
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "Planning the composition.", "thought": True},
                            {"inlineData": {"mimeType": "image/png", "data": draft}, "thought": True},
                            {"text": "Here is your image."},
                            {"inlineData": {"mimeType": self.label, "data": base64.b64encode(image).decode()}},
                        ],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            usageMetadata=usage,
        )
        return 200, answer
