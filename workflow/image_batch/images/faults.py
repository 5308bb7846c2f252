"""Classify what went wrong with one API call, and decide what to do about it.

- retry:  transient (429 rate limits, 408/409, 5xx, timeouts, resets, a body cut short, broken
          base64, bytes that are not an image). Retried with backoff that honours retry-after(-ms).
- fatal:  nothing will work until the user fixes something (quota/billing, 401, 403, unknown
          model). No retry; the whole run stops calling the API.
- row:    this request is refused (moderation, other 400s). No retry; the other rows go on.

The openai client's own retries are switched off (max_retries=0) so that retries do not multiply:
this module and tenacity do them, with the classification above.
"""

import email.utils
import time
from dataclasses import dataclass

RETRY, FATAL, ROW = "retry", "fatal", "row"

QUOTA_CODES = {
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "billing_limit_reached",
    "account_deactivated",
}
MODERATION_CODES = {"moderation_blocked", "content_policy_violation", "content_filter", "safety_violation"}
RETRY_STATUSES = {408, 409, 425, 429}


class InvalidResponse(Exception):
    """The API answered 200 but the answer is unusable (no image, broken base64, not an image)."""


class DownloadFailed(Exception):
    """The answer (already paid for and stored) points to an image URL that could not be fetched
    yet. Retried by downloading again, never by calling the API again."""


@dataclass
class Fault:
    disposition: str  # RETRY, FATAL or ROW
    reason: str
    retry_after: float | None = None  # seconds, from the answer's headers
    status: int | None = None
    headers: dict | None = None


def retry_after_seconds(headers):
    """Seconds to wait as the server asked: retry-after-ms, else retry-after (seconds or HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(parsed.timestamp() - time.time(), 0.0)
    return None


def _message(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", None) or exc)


def classify(exc, model=None):
    """A :class:`Fault` for ``exc``, or None when it is not an API fault (a bug: let it raise)."""
    import openai

    from image_batch.images.imaging import NotAnImage

    if isinstance(exc, (InvalidResponse, NotAnImage)):
        return Fault(RETRY, f"unusable answer: {exc}")
    if isinstance(exc, openai.APITimeoutError):
        return Fault(RETRY, "the API did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return Fault(RETRY, f"connection problem: {exc.__cause__ or exc}")
    if not isinstance(exc, openai.APIStatusError):
        return None
    status = exc.status_code
    code = getattr(exc, "code", None) or ""
    message = _message(exc)
    headers = exc.response.headers if exc.response is not None else {}
    label = f"{status} {code}".strip()
    if status == 429 and code in QUOTA_CODES:
        return Fault(
            FATAL, f"{label}: {message} -- the account is out of quota or credit: check your plan and billing."
        )
    if status == 401:
        return Fault(FATAL, f"{label}: {message} -- the API key was refused: check AI_API_KEY.")
    if status == 403:
        return Fault(
            FATAL,
            f"{label}: {message} -- access denied: check that the key's project may use model {model!r} "
            "(some image models need organisation verification).",
        )
    if status == 404:
        if code == "model_not_found" or "model" in message.lower():
            return Fault(FATAL, f"{label}: {message} -- set openai.model in config/config.yaml to a model you can use.")
        return Fault(FATAL, f"{label}: {message} -- the endpoint was not found: check OPENAI_BASE_URL.")
    if status in RETRY_STATUSES or status >= 500:
        return Fault(RETRY, f"{label}: {message}", retry_after_seconds(headers), status, dict(headers))
    if code in MODERATION_CODES:
        return Fault(ROW, f"refused by the safety system ({code}): {message}")
    return Fault(ROW, f"the API refused the request ({label}): {message}")
