"""The images stage: make one image from its spec, write the PNG and its sidecar atomically.

For a paid provider the response store is consulted first (under a per-request lock); a call is
made only when it has no usable answer, and the answer is stored the moment it arrives. Failures
are classified (image_batch.images.faults): transient ones are retried with backoff (tenacity), a refused
row fails alone, a fatal one stops the run's API calls.
"""

import datetime
import hashlib
import json
import os

import tenacity

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes, atomic_write_json
from image_batch.common.joblog import JobLog
from image_batch.common.redact import redact
from image_batch.images import failures
from image_batch.images.faults import FATAL, RETRY, ROW, DownloadFailed, Fault, InvalidResponse, classify
from image_batch.images.imaging import NotAnImage, to_png
from image_batch.images.ratelimit import pacer_for
from image_batch.images.store import open_store, request_key
from image_batch.providers import get_provider


class FaultError(Exception):
    def __init__(self, fault, attempts=0):
        super().__init__(fault.reason)
        self.fault = fault
        self.attempts = attempts


class ImageFailed(UserError):
    """One image could not be made; the message says why (the key is never in it)."""


def _iso(timestamp=None):
    moment = (
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC) if timestamp else datetime.datetime.now(datetime.UTC)
    )
    return moment.isoformat(timespec="seconds")


def _retrying(settings, log):
    settings = settings or {}
    max_wait = float(settings.get("max_wait", 60))
    initial = float(settings.get("initial_wait", 1))
    backoff = tenacity.wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial)

    def wait(state):
        fault = getattr(state.outcome.exception(), "fault", None)
        if fault is not None and fault.retry_after is not None:
            return min(fault.retry_after, max_wait)
        return backoff(state)

    def before_sleep(state):
        log(
            f"attempt {state.attempt_number} failed: {redact(state.outcome.exception())}; "
            f"retrying in {state.upcoming_sleep:.2f}s"
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, FaultError) and e.fault.disposition == RETRY),
        stop=tenacity.stop_after_attempt(int(settings.get("max_attempts", 8)))
        | tenacity.stop_after_delay(float(settings.get("max_seconds", 900))),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )


def _decode(provider, raw, request):
    image = provider.decode(raw, request)
    png, info = to_png(image.data)
    return image, png, info


def obtain(request, config, log):
    """(GeneratedImage, png bytes, info) for ``request``: from the store, else from the provider."""
    provider = get_provider(request["provider"], config)
    if not provider.paid:
        log("OFFLINE generator: this is a placeholder image, not an AI-generated one")
        return _decode(provider, provider.fetch(request), request)

    store = open_store(config)
    key = request_key(request)
    pacer = pacer_for(
        (request["provider"], os.environ.get("OPENAI_BASE_URL"), request["model"]),
        (config.get(request["provider"]) or {}).get("requests_per_minute"),
    )
    max_unusable = int((config.get("retry") or {}).get("max_unusable", 3))
    unusable = 0
    with store.lock(key):
        for attempt in _retrying(config.get("retry"), log):
            with attempt:
                number = attempt.retry_state.attempt_number
                entry = store.get(key)
                if entry is not None:  # paid for already (by an earlier run, or an earlier attempt)
                    result = _from_store(store, key, entry, provider, request, log, number)
                    if result is not None:
                        return result
                if config.get("mode") == "batch":  # answers come from the batch; never a full-price call
                    from image_batch.images.batch import failure_reason

                    raise FaultError(Fault(ROW, failure_reason(key)), number)
                reason = failures.stop_reason()
                if reason:
                    raise FaultError(Fault("stopped", f"not attempted: the run stopped ({reason})"), number)
                pacer.wait()
                log(f"calling {request['provider']} model {request['model']} (attempt {number})")
                try:
                    raw = provider.fetch(request)
                except Exception as exc:  # classified below; anything unclassified is a bug and raises
                    fault = classify(exc, request.get("model"))
                    if fault is None:
                        raise
                    pacer.observe(fault.headers)
                    if fault.status == 429:
                        pacer.pause(fault.retry_after)  # everyone waits, not just this job
                    raise FaultError(fault, number) from None
                store.put(key, request, raw)  # paid for: keep it before anything else can fail
                pacer.observe(raw.headers)
                log(f"answer stored as {key[:12]} (request id {raw.headers.get('x-request-id')})")
                try:
                    result = _decode(provider, raw, request)
                except DownloadFailed as exc:  # the stored answer is retried, not the API
                    raise FaultError(Fault(RETRY, str(exc)), number) from None
                except (InvalidResponse, NotAnImage) as exc:
                    store.reject(key, str(exc))
                    unusable += 1
                    if unusable >= max_unusable:  # likely deterministic: stop paying for it
                        reason = f"the API gave {unusable} unusable answers for this row; last: {exc}"
                        raise FaultError(Fault(ROW, reason), number) from None
                    raise FaultError(classify(exc), number) from None
                if raw.attachment is not None:
                    store.put(key, request, raw)  # keep the downloaded image with its answer
                return result


def _from_store(store, key, entry, provider, request, log, number):
    """The image from a stored answer, or None when the entry turned out unusable (moved aside)."""
    raw = _as_raw(entry)
    try:
        result = _decode(provider, raw, request)
    except DownloadFailed as exc:
        raise FaultError(Fault(RETRY, str(exc)), number) from None
    except (InvalidResponse, NotAnImage) as exc:
        store.reject(key, str(exc))
        log(f"stored answer {key[:12]} unusable ({exc}); asking the API again")
        return None
    if raw.attachment is not None and entry.get("attachment") is None:
        store.put(key, request, raw)
    log(f"served from the response store ({key[:12]}); no API call")
    return result


def _as_raw(entry):
    from image_batch.providers.base import RawResponse

    return RawResponse(
        body=entry["body"],
        headers=entry.get("headers") or {},
        status=entry.get("status", 200),
        attachment=entry.get("attachment"),
    )


def make_image(spec_file, png_file, sidecar_file, log_file, config):
    """Generate the image described by ``spec_file``.  The PNG and the sidecar are each written to
    a temporary name and renamed into place, so a crash never leaves a half-written file."""
    with open(spec_file, encoding="utf-8") as handle:
        spec = json.load(handle)
    request = spec["request"]
    failures.clear_failure(spec["folder"], spec["image_id"])
    with JobLog(log_file) as log:
        try:
            image, png, info = obtain(request, config, log)
        except FaultError as exc:
            fault = exc.fault
            if fault.disposition == FATAL:
                failures.stop_run(fault.reason)
            disposition = {RETRY: "gave-up", ROW: "refused", FATAL: "fatal"}.get(fault.disposition, "stopped")
            reason = (
                fault.reason
                if fault.disposition != RETRY
                else f"gave up after {exc.attempts} attempt(s): {fault.reason}"
            )
            failures.record_failure(spec, disposition, reason, exc.attempts)
            log(f"FAILED: {redact(reason)}")
            raise ImageFailed(f"image {spec['image_id']} ({spec['context']}): {redact(reason)}") from None
        if info.get("converted_from"):
            log(f"converted {info['converted_from']} answer to PNG")
        sidecar = {
            "image_id": spec["image_id"],
            "context": spec["context"],
            "folder": spec["folder"],
            "prompt": request["prompt"],
            "provider": request["provider"],
            "model": image.model,
            "size": image.details.get("size") or request.get("size"),
            "quality": image.details.get("quality") or request.get("quality"),
            "background": image.details.get("background") or request.get("background"),
            "request_id": image.request_id,
            "usage": image.usage,
            "created": _iso(image.created),
            "width": info["width"],
            "height": info["height"],
            "source_format": info["source_format"],
            "sha256": hashlib.sha256(png).hexdigest(),
            "bytes": len(png),
        }
        if request.get("variant"):
            sidecar["variant"] = request["variant"]
        atomic_write_bytes(png_file, png)
        atomic_write_json(sidecar_file, sidecar)
        log(f"wrote {png_file} ({len(png)} bytes, sha256 {sidecar['sha256']})")
    return sidecar
