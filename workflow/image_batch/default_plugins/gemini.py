"""Google's Gemini image models (Gemini Developer API, "generativelanguage"), with Google's own SDK
(google-genai).

One image is one ``models.generate_content`` call with ``response_modalities=["IMAGE"]`` and an
``image_config`` (``aspect_ratio``, ``image_size``); the Gemini API takes no output format. The SDK
is asked for the answer as received (``should_return_http_response``), so the response store keeps
the exact JSON before anything decodes it.

- The image is the last non-"thought" part with ``inlineData`` (text and thought parts come too);
  its bytes are sniffed, never trusted to their label (often JPEG labelled otherwise): the images
  stage normalises them to PNG.
- A refusal is an HTTP 200 with no image: ``promptFeedback.blockReason`` and no candidates, or a
  ``finishReason`` such as ``IMAGE_SAFETY``. It fails that row alone (faults.Refused), unretried.
- Errors are ``{"error": {"code", "message", "status", "details"}}``: 429 ``RESOURCE_EXHAUSTED``
  waits the ``google.rpc.RetryInfo`` ``retryDelay`` (the SDK ignores it, and sends no retry-after),
  unless a ``QuotaFailure`` names a per-day quota or a quota of 0 (stop: waiting will not help);
  a bad key (400 ``API_KEY_INVALID``, 401, 403), an unknown or retired model (404), a refused
  setting (400 naming a field of the request) and billing/location preconditions stop the run;
  500/503/504, timeouts and resets are retried. The SDK's own retries stay off (its default).

The key comes from ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (the SDK's order: the first wins when
both are set), the endpoint from ``GOOGLE_GEMINI_BASE_URL`` (the SDK's own variable) or Google's. The
endpoint and the pinned API version are part of every request (``base_url``, ``api_version``), so of
the response store's key: an answer paid for at one endpoint is never served for another.
"""

import base64
import binascii
import json
import os
import re
import threading

from image_batch.common.errors import UserError
from image_batch.common.settings import GEMINI_KEY_VARIABLES, gemini_api_key
from image_batch.hookspecs import hookimpl
from image_batch.images.faults import FATAL, RETRY, ROW, Fault, InvalidResponse, Refused, retry_after_seconds
from image_batch.providers import GeneratedImage, ImageProvider, RawResponse

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
BASE_URL_VARIABLE = "GOOGLE_GEMINI_BASE_URL"
# The image models and image_config are served by v1beta (google-genai 3.x defaults to v1): pinned.
API_VERSION = "v1beta"
# Request fields taken from config["gemini"] when set (None/absent: not sent, the API's default).
_IMAGE_CONFIG_FIELDS = ("aspect_ratio", "image_size")
# Answer headers worth keeping with a stored answer (never the request's x-goog-api-key).
_KEPT_HEADERS = ("content-type", "x-goog-request-id", "server-timing")
# finishReason values that mean "an answer, as far as it goes" rather than a refusal.
_NOT_REFUSALS = {"STOP", "FINISH_REASON_UNSPECIFIED", "MAX_TOKENS", None, ""}
# Fields of a request whose refusal (a 400 naming them) is about the settings, not the row.
_SETTING_WORDS = re.compile(
    r"aspect[_ ]?ratio|aspectRatio|image_?size|imageSize|image_?config|imageConfig|generation_?config|"
    r"generationConfig|response_?modalities|responseModalities|\bmodel\b",
)
# A refused key named by the message alone (a gateway may pass Google's error on without its ErrorInfo).
_KEY_REFUSED = re.compile(r"API key (not valid|expired|invalid)", re.IGNORECASE)
_QUOTA_STOPS = re.compile(r"per_?day|perday|daily", re.IGNORECASE)

_clients = {}
_clients_lock = threading.Lock()


def base_url(environ=None):
    """The endpoint requests go to: GOOGLE_GEMINI_BASE_URL, else Google's own; no trailing slash."""
    environ = os.environ if environ is None else environ
    return ((environ.get(BASE_URL_VARIABLE) or "").strip() or DEFAULT_BASE_URL).rstrip("/")


def _client(timeout, url, api_version):
    """One client per key/endpoint/timeout, shared by the threads of this process. The SDK does not
    retry by default (retry_options unset): image_batch.images.generate classifies and retries."""
    from google import genai
    from google.genai import types

    key = gemini_api_key()
    if not key:
        raise UserError(
            f"provider 'gemini' needs an API key: set {' or '.join(reversed(GEMINI_KEY_VARIABLES))} "
            "(in the environment or .env)."
        )
    cache_key = (key, url, timeout, api_version)
    with _clients_lock:
        if cache_key not in _clients:
            options = types.HttpOptions(base_url=url, api_version=api_version, timeout=int(timeout * 1000))
            _clients[cache_key] = genai.Client(api_key=key, http_options=options)
        return _clients[cache_key]


def _get(mapping, snake, camel=None):
    """A field of an answer in either spelling: REST JSON is camelCase, the SDK's dumps snake_case."""
    if not isinstance(mapping, dict):
        return None
    camel = camel or re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)
    return mapping.get(camel, mapping.get(snake))


def usage_of(metadata):
    """An answer's ``usageMetadata`` as the usage the bill reads (images.bill: OpenAI's shape), with
    the original kept beside it. Thinking tokens are billed as text output."""
    if not isinstance(metadata, dict):
        return None

    def by_modality(details):
        counts = {}
        for item in details or ():
            if isinstance(item, dict):
                kind = str(item.get("modality") or "TEXT").upper()
                counts[kind] = counts.get(kind, 0) + int(_get(item, "token_count") or 0)
        return counts

    prompt = int(_get(metadata, "prompt_token_count") or 0)
    out = int(_get(metadata, "candidates_token_count") or 0)
    thoughts = int(_get(metadata, "thoughts_token_count") or 0)
    inputs = by_modality(_get(metadata, "prompt_tokens_details"))
    outputs = by_modality(_get(metadata, "candidates_tokens_details"))
    image_out = outputs.get("IMAGE", out if not outputs else 0)
    text_out = out - image_out + thoughts
    image_in = inputs.get("IMAGE", 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "text_tokens": prompt - image_in,
            "image_tokens": image_in,
            "cached_tokens": int(_get(metadata, "cached_content_token_count") or 0),
        },
        "output_tokens": image_out + text_out,
        "output_tokens_details": {"image_tokens": image_out, "text_tokens": text_out},
        "usage_metadata": metadata,
    }


def _duration(text):
    """Seconds of a google.protobuf.Duration in JSON ("53s", "1.5s"), or None."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s\s*", str(text or ""))
    return float(match.group(1)) if match else None


def error_parts(details):
    """(error dict, {"@type" short name: [detail, ...]}) of a Google error body."""
    body = details[0] if isinstance(details, list) and details else details
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    found = {}
    for item in error.get("details") or ():
        if isinstance(item, dict):
            kind = str(item.get("@type", "")).rsplit(".", 1)[-1]
            found.setdefault(kind, []).append(item)
    return error, found


def classify_google_error(code, status, details, headers, request=None):
    """A :class:`Fault` for an error answer of the Gemini API (``errors.APIError``'s fields)."""
    request = request or {}
    error, found = error_parts(details)
    status = status or error.get("status") or ""
    message = str(error.get("message") or "").strip() or f"HTTP {code}"
    label = f"{code} {status}".strip()
    model = request.get("model")
    reasons = {str(item.get("reason", "")) for item in found.get("ErrorInfo", ())}
    if (
        reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED"}
        or code == 401
        or (code == 400 and _KEY_REFUSED.search(message))
    ):
        return Fault(
            FATAL,
            f"{label}: {message} -- the API key was refused: check GEMINI_API_KEY (or GOOGLE_API_KEY, which is "
            "used when both are set).",
            status=code,
            code=status,
        )
    if code == 403:
        return Fault(
            FATAL,
            f"{label}: {message} -- access denied: the key may be blocked or leaked, or its project may not "
            f"use model {model!r}; check the key in Google AI Studio.",
            status=code,
            code=status,
        )
    if code == 404:
        return Fault(
            FATAL,
            f"{label}: {message} -- model {model!r} is not available at {request.get('base_url')}: set "
            "gemini.model in config/config.yaml to a current model (config/models.yaml lists them).",
            status=code,
            code=status,
        )
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        for failure in found.get("QuotaFailure", ()):
            for violation in failure.get("violations") or ():
                quota = " ".join(str(violation.get(k) or "") for k in ("quotaId", "quotaMetric", "subject"))
                if _QUOTA_STOPS.search(quota) or str(violation.get("quotaValue", "")) == "0":
                    return Fault(
                        FATAL,
                        f"{label}: {message} -- a daily quota (or one of 0 on this key's tier) is used up "
                        f"({violation.get('quotaId') or quota.strip()}): waiting will not help; run again when it "
                        "resets, or raise the key's tier (billing) in Google AI Studio.",
                        status=code,
                        code=status,
                    )
        delay = None
        for info in found.get("RetryInfo", ()):
            delay = _duration(info.get("retryDelay"))
        if delay is None:
            delay = retry_after_seconds(headers)
        return Fault(RETRY, f"{label}: {message}", delay, 429, dict(headers or {}), status)
    if code in (408, 409, 425) or code >= 500:
        return Fault(RETRY, f"{label}: {message}", retry_after_seconds(headers), code, dict(headers or {}), status)
    if status == "FAILED_PRECONDITION":  # billing not enabled, free tier not offered in the user's country
        return Fault(
            FATAL,
            f"{label}: {message} -- the account cannot use this API as set up (billing or location): "
            "check the key's project in Google AI Studio.",
            status=code,
            code=status,
        )
    fields = [v.get("field", "") for b in found.get("BadRequest", ()) for v in b.get("fieldViolations") or ()]
    if code == 400 and (any(_SETTING_WORDS.search(f) for f in fields) or _SETTING_WORDS.search(message)):
        shown = ", ".join(
            f"{name} = {request[name]!r}" for name in ("model", *_IMAGE_CONFIG_FIELDS) if request.get(name)
        )
        return Fault(
            FATAL,
            f"{label}: the API refused the settings ({shown}): {message} -- change gemini.* in config/config.yaml "
            "(config/models.yaml lists what each model takes).",
            status=code,
            code=status,
        )
    return Fault(ROW, f"the API refused the request ({label}): {message}", status=code, code=status)


def _bytes(text):
    """The bytes of a proto JSON ``bytes`` field: standard or URL-safe base64, padded or not (both are
    valid proto JSON; google-genai's own types write the URL-safe kind)."""
    try:
        text = str(text).strip()
        text += "=" * (-len(text.rstrip("=")) % 4) if "=" not in text else ""
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text.encode("ascii"))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidResponse(f"broken base64 in the answer's image: {exc}") from None


def find_image(answer):
    """(image bytes, part) of a generateContent answer (a dict); raises faults.Refused for a
    refusal and faults.InvalidResponse for an answer that is neither."""
    if not isinstance(answer, dict):
        raise InvalidResponse("the answer is not a generateContent response")
    candidates = answer.get("candidates") or []
    feedback = _get(answer, "prompt_feedback") or {}
    block = _get(feedback, "block_reason")
    if not candidates and block:
        why = _get(feedback, "block_reason_message") or ""
        raise Refused(f"refused by Gemini: the prompt was blocked ({block}){': ' + why if why else ''}", str(block))
    if not isinstance(candidates, list):
        raise InvalidResponse("the answer's candidates are not a list")
    texts, reason, note = [], None, None
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        reason = reason or _get(candidate, "finish_reason")
        note = note or _get(candidate, "finish_message")
        parts = (candidate.get("content") or {}).get("parts") or []
        image = None
        for part in parts:
            if not isinstance(part, dict):
                continue
            inline = _get(part, "inline_data")
            if isinstance(inline, dict) and inline.get("data") and not part.get("thought"):
                image = inline  # the last one: thought images and drafts come before the final one
            elif part.get("text") and not part.get("thought"):
                texts.append(str(part["text"]))
        if image is not None:
            return _bytes(image["data"]), image
    said = f"; it said: {' '.join(texts)[:200]!r}" if texts else ""
    extra = f" ({note})" if note else ""
    if not candidates:
        raise InvalidResponse("the answer has no candidates and no block reason")
    if reason == "MAX_TOKENS":
        raise InvalidResponse(f"the answer was cut short (MAX_TOKENS) before an image{said}")
    if reason in _NOT_REFUSALS:
        raise Refused(f"refused by Gemini: no image in the answer (finishReason {reason or 'none'}){said}", "NO_IMAGE")
    raise Refused(f"refused by Gemini: no image (finishReason {reason}){extra}{said}", str(reason))


class GeminiImagesProvider(ImageProvider):
    name = "gemini"
    paid = True
    batch = True  # Google's Batch API: images.gemini_batch (run by images.batch.run_before_jobs)

    @classmethod
    def request_params(cls, config, environ=None):
        model = config.get("model")
        if not model:
            raise UserError(
                "config gemini.model is not set: name the image model to use (config/models.yaml lists them)."
            )
        params = {
            "endpoint": "generateContent",
            "base_url": base_url(environ),
            "api_version": API_VERSION,
            "model": str(model),
        }
        for name in _IMAGE_CONFIG_FIELDS:
            if config.get(name) is not None:
                params[name] = str(config[name])
        return params

    @property
    def timeout(self):
        return float(self.config.get("timeout", 300))

    def client(self, request=None):
        request = request or {}
        return _client(self.timeout, request.get("base_url") or base_url(), request.get("api_version") or API_VERSION)

    def fetch(self, request, inputs=None):
        from google.genai import types

        image_config = {name: request[name] for name in _IMAGE_CONFIG_FIELDS if request.get(name)}
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(**image_config) if image_config else None,
            should_return_http_response=True,  # the body as received: it is stored before decoding
        )
        contents = request["prompt"]
        if inputs is not None:  # reference pictures (descriptions.references): inline_data parts after the text
            parts = [types.Part(text=request["prompt"])]
            parts += [types.Part.from_bytes(data=data, mime_type=mime) for _, data, mime in inputs.images]
            contents = [types.Content(role="user", parts=parts)]
        answer = self.client(request).models.generate_content(model=request["model"], contents=contents, config=config)
        http = answer.sdk_http_response
        got = {str(k).lower(): v for k, v in (http.headers or {}).items()}
        headers = {name: got[name] for name in _KEPT_HEADERS if name in got}
        body = http.body if isinstance(http.body, (bytes, bytearray)) else (http.body or "").encode("utf-8")
        return RawResponse(body=bytes(body), headers=headers, status=200)

    # Batch API (images.gemini_batch): one inline request per image, and a line's answer as stored.
    def batch_body(self, request, inputs=None):
        """The inline request of a batch for ``request`` (google-genai's InlinedRequest, as a dict);
        ``inputs``: its reference pictures, as inline_data parts after the text."""
        config = {"response_modalities": ["IMAGE"]}
        image_config = {name: request[name] for name in _IMAGE_CONFIG_FIELDS if request.get(name)}
        if image_config:
            config["image_config"] = image_config
        contents = request["prompt"]
        if inputs is not None:
            parts = [{"text": request["prompt"]}]
            parts += [{"inline_data": {"mime_type": mime, "data": data}} for _, data, mime in inputs.images]
            contents = [{"role": "user", "parts": parts}]
        return {"contents": contents, "config": config}

    def batch_answer(self, response):
        """A batch line's ``response`` (a generateContent answer, as received) as a stored answer."""
        return RawResponse(body=json.dumps(response, ensure_ascii=False).encode("utf-8"), status=200)

    def decode(self, raw, request):
        try:
            answer = json.loads(raw.body)
        except (ValueError, TypeError):
            raise InvalidResponse("the answer is not JSON") from None
        request_id = (answer.get("responseId") or answer.get("response_id")) if isinstance(answer, dict) else None
        request_id = request_id or raw.headers.get("x-goog-request-id")
        try:
            data, part = find_image(answer)
        except InvalidResponse as exc:
            exc.args = (f"{exc} (response id {request_id})",)
            raise
        details = {name: request[name] for name in _IMAGE_CONFIG_FIELDS if request.get(name)}
        details["mime_type"] = _get(part, "mime_type")  # as labelled; the bytes are sniffed
        if answer.get("modelVersion"):
            details["model_version"] = answer["modelVersion"]
        return GeneratedImage(
            data=data,
            model=request["model"],
            request_id=request_id,
            usage=usage_of(_get(answer, "usage_metadata")),
            details=details,
        )

    def classify(self, exc, request=None):
        """What an exception from :meth:`fetch` means (faults.Fault), or None for a bug."""
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            response = getattr(exc, "response", None)
            headers = {str(k).lower(): v for k, v in dict(getattr(response, "headers", None) or {}).items()}
            return classify_google_error(int(exc.code or 0), exc.status, exc.details, headers, request)
        transport = []
        for module in ("httpx2", "httpx"):
            try:
                transport.append(__import__(module).TransportError)
            except ImportError:
                pass
        if transport and isinstance(exc, tuple(transport)):
            kind = "the API did not answer in time" if "Timeout" in type(exc).__name__ else "connection problem"
            return Fault(RETRY, f"{kind}: {exc or type(exc).__name__}")
        return None


@hookimpl
def register_image_providers(register):
    register(GeminiImagesProvider)
