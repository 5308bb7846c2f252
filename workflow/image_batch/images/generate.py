"""The images stage: make one image from its spec, write the PNG and its sidecar atomically.

For a paid provider the response store is consulted first (under a per-request lock); a call is
made only when it has no usable answer, and the answer is kept the moment it arrives (a store that
cannot take it is retried, then a rescue folder keeps it). Failures are classified by the provider
(images.faults): transient ones are retried with backoff (tenacity), a refused row fails alone, a
fatal one stops the run's API calls. Each sidecar records what its answer cost.
"""

import datetime
import hashlib
import json
import sys
import threading

import tenacity

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes, atomic_write_json
from image_batch.common.joblog import JobLog
from image_batch.common.redact import redact
from image_batch.costs.bill import answer_cost
from image_batch.costs.catalog import load_catalog
from image_batch.descriptions import references
from image_batch.descriptions.specs import request_digest
from image_batch.images import failures
from image_batch.images.faults import (
    FATAL,
    RETRY,
    ROW,
    DownloadFailed,
    Fault,
    InvalidResponse,
    Refused,
    classify_local,
)
from image_batch.images.imaging import NotAnImage, to_png
from image_batch.images.ratelimit import pacer_for
from image_batch.images.store import open_store, request_key
from image_batch.providers import RawResponse, get_provider
from image_batch.run import ledger


class FaultError(Exception):
    def __init__(self, fault, attempts=0):
        super().__init__(fault.reason)
        self.fault = fault
        self.attempts = attempts


class ImageFailed(UserError):
    """One image could not be made; the message says why (the key is never in it)."""


NOT_STARTED = "not started: "


class NotStarted(UserError):
    """The run is stopping (Ctrl-C, SIGTERM) and this image's call was not yet made: no call, no failure
    record; the rerun makes it. ``str()`` starts with :data:`NOT_STARTED` after the image's name."""


_calls = [0]  # API calls of this process in flight
_calls_lock = threading.Lock()


def calls_in_flight():
    """How many API calls this process has sent and not yet had answered."""
    with _calls_lock:
        return _calls[0]


def stop_calls(reason):
    """The run is stopping: this process starts no new API call; the calls in flight (their number is
    returned) go on, and their answers are kept."""
    failures.stop_here(reason)
    return calls_in_flight()


def _fetch(provider, request, inputs=None):
    with _calls_lock:
        _calls[0] += 1
    try:
        # an edit request's pictures go to the provider only (descriptions.references.Inputs)
        return provider.fetch(request, inputs) if inputs is not None else provider.fetch(request)
    finally:
        with _calls_lock:
            _calls[0] -= 1


def _iso(timestamp=None):
    moment = (
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC) if timestamp else datetime.datetime.now(datetime.UTC)
    )
    return moment.isoformat(timespec="seconds")


_said = set()
_said_lock = threading.Lock()


def _say_once(what, line, out=None):
    """One line on the console for a problem every image may meet (said once a process, not per image)."""
    with _said_lock:
        if what in _said:
            return
        _said.add(what)
    print(f"Image.Batch: {line}", file=out or sys.stderr, flush=True)


def _retrying(retry, log):
    backoff = tenacity.wait_exponential_jitter(
        initial=retry.initial_wait, max=retry.max_wait, jitter=retry.initial_wait
    )

    def wait(state):
        fault = getattr(state.outcome.exception(), "fault", None)
        if fault is not None and fault.retry_after is not None:
            return min(fault.retry_after, retry.max_wait)
        return backoff(state)

    def before_sleep(state):
        log(
            f"attempt {state.attempt_number} failed: {redact(state.outcome.exception())}; "
            f"retrying in {state.upcoming_sleep:.2f}s"
        )
        fault = getattr(state.outcome.exception(), "fault", None)
        if fault is not None and str(fault.reason).startswith("connection problem"):
            _say_once(
                "unreachable",
                f"cannot reach the API ({redact(fault.reason)}): retrying, up to {retry.max_attempts} "
                f"attempts or {retry.max_seconds:g} s an image; if the endpoint is wrong, stop (Ctrl-C) and fix "
                "OPENAI_BASE_URL (GOOGLE_GEMINI_BASE_URL for gemini)",
            )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, FaultError) and e.fault.disposition == RETRY),
        stop=tenacity.stop_after_attempt(retry.max_attempts) | tenacity.stop_after_delay(retry.max_seconds),
        wait=wait,
        before_sleep=before_sleep,
        sleep=failures.pause,  # a stopping run makes no further attempt: it waits no longer
        reraise=True,
    )


def _decode(provider, raw, request):
    image = provider.decode(raw, request)
    png, info = to_png(image.data)
    return image, png, info


class Outcome:
    """An image and how it was obtained: ``paid`` (a call of this run), ``store`` (an answer paid
    for before), ``offline`` (a placeholder); ``origin`` says at which price its answer was bought."""

    def __init__(self, image, png, info, how, origin="live"):
        self.image, self.png, self.info, self.how, self.origin = image, png, info, how, origin


def obtain(request, settings, log, inputs=None):
    """The :class:`Outcome` for ``request``: from the store, else from the provider (``inputs``: the
    pictures of an edit request, descriptions.references.Inputs)."""
    provider = get_provider(request["provider"], settings)
    if not provider.paid:
        log("OFFLINE generator: this is a placeholder image, not an AI-generated one")
        image, png, info = _decode(provider, provider.fetch(request), request)
        return Outcome(image, png, info, ledger.OFFLINE)

    store = open_store(settings)
    section = settings.section(request["provider"])
    pacer = pacer_for(
        (request["provider"], request.get("base_url"), request["model"]), section.get("requests_per_minute")
    )
    unusable = 0
    key = request_key(request)
    with store.lock(key) as lease:
        for attempt in _retrying(settings.retry, log):
            with attempt:
                number = attempt.retry_state.attempt_number
                found = store.lookup(request, request.get("base_url"))
                if found is not None:  # paid for already (by an earlier run, or an earlier attempt)
                    result = _from_store(store, found, provider, request, log, number)
                    if result is not None:
                        return result
                if settings.mode == "batch" and provider.batch:  # answers come from the batch, never full price
                    from image_batch.images.batch import failure_reason

                    raise FaultError(Fault(ROW, failure_reason(key)), number)
                reason = failures.stop_reason()
                if reason:
                    raise FaultError(Fault("stopped", f"not attempted: the run stopped ({reason})"), number)
                if getattr(lease, "lost", False):  # another job took this request over: wait for its answer
                    raise FaultError(Fault(RETRY, "another job took this request over; waiting for its answer"), number)
                pacer.wait()
                stopping = failures.stopped_here()  # checked last: the pacer may have waited a while
                if stopping:
                    raise NotStarted(f"{NOT_STARTED}{stopping}")
                log(f"calling {request['provider']} model {request['model']} (attempt {number})")
                try:
                    raw = _fetch(provider, request, inputs)
                except Exception as exc:  # classified below; anything unclassified is a bug and raises
                    fault = provider.classify(exc, request) or classify_local(exc)
                    if fault is None:
                        raise
                    pacer.observe(fault.headers)
                    if fault.status == 429:
                        pacer.pause(fault.retry_after)  # everyone waits, not just this job
                    raise FaultError(fault, number) from None
                # paid for: keep it before anything else can fail
                store.keep(key, request, raw, "live", log)
                pacer.observe(raw.headers)
                log(f"answer stored as {key[:12]} (request id {raw.headers.get('x-request-id')})")
                try:
                    image, png, info = _decode(provider, raw, request)
                except DownloadFailed as exc:  # the stored answer is retried, not the API
                    raise FaultError(Fault(RETRY, str(exc)), number) from None
                except (InvalidResponse, NotAnImage) as exc:
                    store.reject(key, str(exc))
                    if isinstance(exc, Refused):  # an answer that refuses this row (Gemini): no retry
                        raise FaultError(Fault(ROW, str(exc), status=raw.status, code=exc.code), number) from None
                    unusable += 1
                    if unusable >= settings.retry.max_unusable:  # likely deterministic: stop paying for it
                        reason = f"the API gave {unusable} unusable answers for this row; last: {exc}"
                        raise FaultError(Fault(ROW, reason), number) from None
                    raise FaultError(classify_local(exc), number) from None
                if raw.attachment is not None:  # keep the downloaded image with its answer
                    store.keep(key, request, raw, "live", log, journal=False)
                return Outcome(image, png, info, ledger.PAID, "live")


def _from_store(store, found, provider, request, log, number):
    """The image from a stored answer, or None when the entry turned out unusable (moved aside)."""
    entry = found.entry
    raw = RawResponse(
        body=entry["body"],
        headers=entry.get("headers") or {},
        status=entry.get("status", 200),
        attachment=entry.get("attachment"),
    )
    try:
        image, png, info = _decode(provider, raw, request)
    except DownloadFailed as exc:
        raise FaultError(Fault(RETRY, str(exc)), number) from None
    except (InvalidResponse, NotAnImage) as exc:
        if found.rescued is None:
            store.reject(found.key, str(exc))
        if isinstance(exc, Refused):  # a paid refusal of this row (e.g. a Gemini batch line): it fails alone
            raise FaultError(Fault(ROW, str(exc), code=exc.code), number) from None
        log(f"stored answer {found.key[:12]} unusable ({exc}); asking the API again")
        return None
    origin = found.origin
    if found.rescued is not None:
        # back into the store now that it works; the rescue copy goes once the store has it
        try:
            store.put(found.key, request, raw, origin)
            found.rescued.unlink(missing_ok=True)
            log(f"moved the rescued answer {found.rescued} into the response store")
        except Exception as exc:
            log(f"the rescued answer stays in {found.rescued} ({exc})")
    elif raw.attachment is not None and entry.get("attachment") is None:
        store.keep(found.key, request, raw, origin, log, journal=False)
    if origin == "batch":
        from image_batch.images.batch import bought_this_run

        if found.key in bought_this_run():  # this run's batch paid for it: it is this run's cost
            log(f"made from the answer this run's batch bought ({found.key[:12]}), at the batch price")
            return Outcome(image, png, info, ledger.PAID, origin)
    older = ", stored by an earlier version" if found.legacy else ""
    log(f"served from the response store ({found.key[:12]}{older}); no API call")
    return Outcome(image, png, info, ledger.STORE, origin)


def sidecar_for(spec, outcome, catalog):
    request = spec["request"]
    image, info, png = outcome.image, outcome.info, outcome.png
    sidecar = {
        "image_id": spec["image_id"],
        "context": spec["context"],
        "folder": spec["folder"],
        **({"description": spec["description"]} if "description" in spec else {}),  # describe: the row's own
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
    for name in ("aspect_ratio", "image_size"):  # Gemini's image_config
        if request.get(name):
            sidecar[name] = request[name]
    if request.get("base_url"):
        sidecar["endpoint"] = request["base_url"]
    if request.get("variant"):
        sidecar["variant"] = request["variant"]
    if spec.get("row"):  # a variant of a row (descriptions.row_settings): which row, which candidate
        sidecar["row"] = spec["row"]
        sidecar["candidate"] = request.get("candidate")
    if spec.get("references"):  # names and hashes only: the pictures went to the API alone
        sidecar["references"] = spec["references"]
        if spec.get("mask"):
            sidecar["mask"] = spec["mask"]
    if catalog is None:
        # the offline generator: a placeholder, made here, that cost nothing
        sidecar["cost"] = {"usd": 0.0, "price": "none", "basis": "offline placeholder"}
    else:
        # priced as requested (the size and quality billed are the ones asked for)
        sidecar["cost"] = answer_cost(
            catalog,
            request["model"],
            image.usage,
            outcome.origin,
            request.get("quality"),
            request.get("size") or request.get("image_size"),
        )
    return sidecar


def make_image(spec_file, png_file, sidecar_file, log_file, settings):
    """Generate the image described by ``spec_file``.  The PNG and the sidecar are each written to
    a temporary name and renamed into place, so a crash never leaves a half-written file."""
    with open(spec_file, "rb") as handle:
        spec_bytes = handle.read()
    spec = json.loads(spec_bytes)
    request = spec["request"]
    failures.clear_failure(spec["folder"], spec["image_id"])
    with JobLog(log_file) as log:
        try:
            inputs = references.load(spec, settings.input_csv) if spec.get("references") else None
        except references.ReferenceChanged as exc:
            failures.record_failure(spec, "refused", str(exc), 0)
            ledger.record(spec["folder"], spec["image_id"], ledger.FAILED)
            log(f"FAILED: {exc}")
            raise ImageFailed(f"image {spec['image_id']} ({spec['context']}): {exc}") from None
        if inputs is not None:
            log(f"edit request with {len(inputs.images)} reference picture(s)" + (" and a mask" if inputs.mask else ""))
        try:
            outcome = obtain(request, settings, log, inputs)
        except NotStarted as exc:
            log(f"no call made: {exc}")
            raise NotStarted(f"image {spec['image_id']} ({spec['context']}): {exc}") from None
        except FaultError as exc:
            fault = exc.fault
            if fault.disposition == ROW and fault.code and settings.retry.same_error_stop:
                from image_batch.images.faults import MODERATION_CODES

                if fault.code not in MODERATION_CODES:
                    count = failures.note_refusal(fault.code)
                    if count >= settings.retry.same_error_stop:
                        fault = Fault(
                            FATAL,
                            f"{count} rows in a row were refused with {fault.code} and none succeeded in between "
                            f"(last: {fault.reason}): this is about the settings, not the rows; fix them and run again",
                        )
            if fault.disposition == FATAL:
                failures.stop_run(fault.reason)
            disposition = {RETRY: "gave-up", ROW: "refused", FATAL: "fatal"}.get(fault.disposition, "stopped")
            reason = fault.reason
            if fault.disposition == RETRY:
                reason = f"gave up after {exc.attempts} attempt(s): {fault.reason}"
            failures.record_failure(spec, disposition, reason, exc.attempts)
            ledger.record(spec["folder"], spec["image_id"], ledger.FAILED)
            log(f"FAILED: {redact(reason)}")
            raise ImageFailed(f"image {spec['image_id']} ({spec['context']}): {redact(reason)}") from None
        if outcome.info.get("converted_from"):
            log(f"converted {outcome.info['converted_from']} answer to PNG")
        paid = outcome.how != ledger.OFFLINE
        catalog = load_catalog(settings.catalog_path) if paid else None
        sidecar = sidecar_for(spec, outcome, catalog)
        sidecar["request_sha256"] = request_digest(spec_bytes)  # the request file it was made from
        atomic_write_bytes(png_file, outcome.png)
        atomic_write_json(sidecar_file, sidecar)
        if paid:
            failures.note_success()
        cost = (sidecar.get("cost") or {}).get("usd")
        ledger.record(
            spec["folder"],
            spec["image_id"],
            outcome.how,
            cost if outcome.how == ledger.PAID else 0.0,
            (sidecar.get("cost") or {}).get("price"),
            request_key(request) if paid else None,
        )
        log(f"wrote {png_file} ({len(outcome.png)} bytes, sha256 {sidecar['sha256']})")
    return sidecar
