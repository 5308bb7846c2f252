"""What went wrong with one API call, and what to do about it.

- retry:  transient (429 rate limits, 408/409/425, 5xx, timeouts, resets, a body cut short, broken
          base64, bytes that are not an image). Retried with backoff that honours retry-after(-ms);
          a retry-after that is neither seconds nor an HTTP date is ignored (backoff decides).
- fatal:  nothing will work until the user fixes something: billing or quota (whatever the status),
          401, 403, an unknown or retired model, a 400 about a setting of the request (model, size,
          quality, background, output format, ...). No retry; the whole run stops calling the API.
- row:    this request is refused (moderation, other 400s). No retry; the other rows go on. As a
          safety net, the same refusal code on several rows in a row, with no success in between,
          stops the run too (images.failures.note_refusal).

Providers classify their own exceptions (``ImageProvider.classify``) with :func:`classify_api_error`
for HTTP APIs shaped like OpenAI's. The openai client's own retries are off (max_retries=0), so that
retries do not multiply: image_batch.images.generate retries, with tenacity.
"""

import email.utils
import time
from dataclasses import dataclass

RETRY, FATAL, ROW = "retry", "fatal", "row"

# Codes meaning the account cannot pay: whatever the status (OpenAI sends billing_hard_limit_reached
# with 400, insufficient_quota with 429).
BILLING_CODES = {
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "billing_limit_reached",
    "account_deactivated",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
}
MODERATION_CODES = {"moderation_blocked", "content_policy_violation", "content_filter", "safety_violation"}
# Gemini's refusals (HTTP 200, no image): finishReason / promptFeedback.blockReason values about the
# content of one row. (NO_IMAGE is not among them: on several rows in a row it is about the settings.)
MODERATION_CODES |= {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
    "OTHER",
    "IMAGE_OTHER",
}
# Request fields that are settings of the whole run: a 400 naming one of them fails every row alike.
SETTING_PARAMS = {
    "model",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "complexity",
    "n",
    "response_format",
    "style",
    "input_fidelity",
    "partial_images",
    "stream",
}
RETRY_STATUSES = {408, 409, 425, 429}


class InvalidResponse(Exception):
    """The API answered 200 but the answer is unusable (no image, broken base64, not an image)."""


class Refused(InvalidResponse):
    """The API answered 200 but refused this row (e.g. Gemini's finishReason IMAGE_SAFETY, or a
    blocked prompt): that row fails alone, with the reason, and is not asked again in this run."""

    def __init__(self, reason, code=None):
        super().__init__(reason)
        self.code = code


class DownloadFailed(Exception):
    """The answer (already paid for and stored) points to an image URL that could not be fetched
    yet. Retried by downloading again, never by calling the API again."""


@dataclass
class Fault:
    disposition: str  # RETRY, FATAL or ROW (or "stopped")
    reason: str
    retry_after: float | None = None  # seconds, from the answer's headers
    status: int | None = None
    headers: dict | None = None
    code: str | None = None  # the API's error code, for the same-refusal safety net


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def retry_after_seconds(headers):
    """Seconds to wait as the server asked: retry-after-ms, else retry-after (seconds or an HTTP
    date). None when absent or unreadable: the caller's backoff decides then."""
    if not headers:
        return None
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000.0, 0.0)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    try:
        return max(moment.timestamp() - time.time(), 0.0)
    except (OverflowError, OSError, ValueError):
        return None


def classify_api_error(status, code, param, message, headers, request=None, type_=None):
    """A :class:`Fault` for an HTTP error answer of an OpenAI-shaped API."""
    request = request or {}
    code = code or ""
    label = f"{status} {code}".strip()
    if code in BILLING_CODES or type_ in BILLING_CODES:
        return Fault(
            FATAL,
            f"{label}: {message} -- the account cannot pay (billing or quota): "
            "check your plan, billing and spend limits.",
            status=status,
            code=code,
        )
    if status == 401:
        return Fault(
            FATAL, f"{label}: {message} -- the API key was refused: check AI_API_KEY.", status=status, code=code
        )
    if status == 403:
        return Fault(
            FATAL,
            f"{label}: {message} -- access denied: check that the key's project may use model "
            f"{request.get('model')!r} (some image models need organisation verification).",
            status=status,
            code=code,
        )
    if status == 404:
        if code == "model_not_found" or "model" in message.lower():
            return Fault(
                FATAL,
                f"{label}: {message} -- model {request.get('model')!r} is not available: set openai.model in "
                "config/config.yaml to a current model (config/models.yaml lists them).",
                status=status,
                code=code,
            )
        return Fault(
            FATAL, f"{label}: {message} -- the endpoint was not found: check OPENAI_BASE_URL.", status=status, code=code
        )
    if status in RETRY_STATUSES or status >= 500:
        return Fault(RETRY, f"{label}: {message}", retry_after_seconds(headers), status, dict(headers or {}), code)
    if code in MODERATION_CODES:
        return Fault(ROW, f"refused by the safety system ({code}): {message}", status=status, code=code)
    if status == 400 and param in SETTING_PARAMS:
        value = request.get(param)
        shown = f" = {value!r}" if value is not None else ""
        fix = (
            "choose a current model (config/models.yaml lists them)"
            if param == "model"
            else f"change openai.{param} in config/config.yaml (config/models.yaml lists what each model takes)"
        )
        return Fault(
            FATAL,
            f"{label}: the API refused the setting {param}{shown} for model {request.get('model')!r}: "
            f"{message} -- {fix}.",
            status=status,
            code=code,
        )
    return Fault(ROW, f"the API refused the request ({label}): {message}", status=status, code=code)


def classify_local(exc):
    """Faults that are not HTTP errors: an answer that turned out unusable."""
    from image_batch.images.imaging import NotAnImage

    if isinstance(exc, (InvalidResponse, NotAnImage)):
        return Fault(RETRY, f"unusable answer: {exc}")
    return None
