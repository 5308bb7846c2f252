"""Prompts written by a model (``describe:``): a chat model turns each row's description into the
image's prompt, before the image.

Each row has a *describe request* (writer provider, endpoint, model, the instructions for its
context, and the description: its template's text when a template is set), known at planning. Its
paid answer goes to the response store like an image's (keyed by the full request, endpoint
included; never paid twice; served after ``rm -rf results``). Planning only reads the store:

- *written*: the store holds the answer (or the writer is the offline one): planning knows the
  prompt, and the image's request is exactly what it is without ``describe`` (its params, and the
  written prompt as ``prompt``), plus the row's ``description``: its request file, staleness and
  everything else as usual. The image job writes ``results/prompts/<folder>/<id>.txt`` if missing.
- *pending*: not stored. Pending rows are grouped in chunks of :data:`CHUNK_ROWS`; a chunk is the
  file ``results/prompts/_chunks/<n>.<digest16>.json`` named by its content (common.addressed):
  its rows' describe requests and what each image was last made from. The ``write_prompts`` job
  of a chunk asks the model for each row (concurrently, store first), writes each row's prompt
  file, then the chunk file. The image job of a pending row takes the chunk file as input and
  builds its request in the job (params + the written prompt), writing the content-named request
  file too, so that the next plan finds the image up to date. A rewrite that gives the same prompt
  remakes the image from the store: nothing is paid.

Batch mode: a real run writes the pending prompts before the images' batches are submitted
(:func:`write_before_batch`): through the writer's Batch API (OpenAI's ``/v1/responses`` lines by
images.batch.BatchRunner, Gemini's inline requests by images.gemini_batch.GeminiBatchRunner), else
live; the images are then batched with their written prompts.

With ``describe`` off nothing here runs: request files and store keys are those of before.
"""

import concurrent.futures
import csv
import io
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from image_batch.common import addressed
from image_batch.common.errors import UserError
from image_batch.common.fileio import canonical_json, write_if_changed
from image_batch.common.joblog import JobLog
from image_batch.descriptions.specs import IMAGES, SPEC_ROOT, request_path, spec_bytes
from image_batch.writers import get_writer, writer_class

PROMPTS = Path("results/prompts")
CHUNKS = PROMPTS / "_chunks"
LOGS = Path("results/logs/prompts")
CHUNK_ROWS = 200  # rows per write_prompts job
CONCURRENCY = 8  # calls in flight in one write_prompts job

OFFLINE_NOTE = (
    "DESCRIBE: the prompts are written by the built-in OFFLINE WRITER (no key, or describe.provider: "
    "offline): the description with the instructions' first words, not a model's prompt"
)


class PromptFailed(UserError):
    """A row's prompt could not be written; the message says why (the key is never in it)."""


def prompt_file(folder, image_id, root=PROMPTS):
    return Path(root) / folder / f"{image_id}.txt"


def writer_name(settings, choices):
    """The provider that writes the prompts: ``describe.provider``, else the image provider; the
    offline writer when images are placeholders (no key)."""
    if choices.provider == "offline" or settings.describe.provider == "offline":
        return "offline"
    return settings.describe.provider or choices.provider


def instructions_for(settings, context, folder):
    contexts = settings.describe.contexts or {}
    return contexts.get(context) or contexts.get(folder) or settings.describe.instructions


def check_model(settings, writer):
    """A ``describe.model`` the catalogue lists as an image model, or for another provider, is
    refused before any call (a model it does not list is used as configured, unpriced)."""
    if writer == "offline":
        return
    from image_batch.costs.catalog import load_catalog

    model = load_catalog(settings.catalog_path).lookup(settings.describe.model)
    if model is None:
        return
    where = settings.origin("describe", "model")
    if model.kind != "text":
        raise UserError(
            f"config describe.model: {model.name} is an image model ({where}): name a chat model that writes "
            "text, e.g. gpt-5.4-mini (openai) or gemini-3-flash-preview (gemini)"
        )
    if model.provider != writer:
        raise UserError(
            f"config describe.model: {model.name} is a {model.provider} model but the prompts are written by "
            f"{writer} ({where}): set describe.provider: {model.provider}, or name a {writer} chat model"
        )


def check_key(writer, choices):
    """A paid writer needs its own key: without it, one line before any call (unless the images lack
    theirs too: a real run stops on that already, a dry run goes on)."""
    from image_batch.common.settings import unset_key

    if choices.missing_key or writer == choices.provider:
        return
    variable = unset_key(writer)
    if variable:
        raise UserError(
            f"describe.provider is {writer!r} but no key for it is set: set {variable} (in the environment "
            "or .env), or set describe.provider: null to write the prompts with the image provider (nothing was called)"
        )


def describe_request(writer, params, model, instructions, text):
    return {"provider": writer, **params, "model": model, "instructions": instructions, "input": text}


def stored_text(store, writer, request):
    """The written prompt for ``request`` from the store, or None (not there, or unusable)."""
    from image_batch.images.faults import InvalidResponse
    from image_batch.providers import RawResponse

    found = store.lookup(request, request.get("base_url"))
    if found is None:
        return None
    entry = found.entry
    raw = RawResponse(body=entry["body"], headers=entry.get("headers") or {}, status=entry.get("status", 200))
    try:
        return writer.text(raw, request)[0]
    except InvalidResponse:
        return None


@dataclass
class Describing:
    """What planning decided about the prompts, without writing anything."""

    writer: str
    paid: bool
    requests: dict = field(default_factory=dict)  # (folder, image_id) -> describe request
    written: dict = field(default_factory=dict)  # (folder, image_id) -> prompt (stored, or offline)
    pending: list = field(default_factory=list)  # (folder, image_id) in sheet order
    chunk_of: dict = field(default_factory=dict)  # (folder, image_id) -> its chunk file
    chunk_rows: dict = field(default_factory=dict)  # chunk file -> [(folder, image_id)]
    files: object = None  # addressed.Files of the chunk files

    @property
    def due(self):
        return self.files.due if self.files else []


def plan_describe(settings, choices, specs, rows, local=True, job_process=False):
    """The :class:`Describing` of ``specs`` (changed in place: ``description`` added, ``prompt`` set
    to the written prompt, or None while pending), or None with ``describe`` off. ``job_process``:
    planning in a job's own process (a cluster executor), see :func:`rejoin`."""
    if not settings.describe.on:
        return None
    import os

    if not local:
        # its job processes would have to find the chunk files in storage (see rejoin)
        raise UserError(
            "describe is not supported with a default storage provider yet: run it on one machine or a "
            "shared filesystem (then the prompts are in the response store), or set describe.model: null"
        )
    name = writer_name(settings, choices)
    cls = writer_class(name)
    check_model(settings, name)
    check_key(name, choices)
    params = cls.request_params(settings.section(name), os.environ)
    out = Describing(name, bool(cls.paid))
    writer = cls(settings.section(name))
    store = None
    if out.paid:
        from image_batch.images.store import open_store

        store = open_store(settings)
    by_id = {row.image_id: row for row in rows}
    for spec in specs:
        # a row's variants (per-row settings: specs with "row") share its description, so its prompt
        row = by_id[spec.get("row", spec["image_id"])]
        key = (spec["folder"], spec["image_id"])
        text = spec["request"]["prompt"]  # the description, or its template's text
        request = describe_request(
            name, params, settings.describe.model, instructions_for(settings, row.context, row.folder), text
        )
        out.requests[key] = request
        spec["description"] = row.description
        written = writer.write(request) if not out.paid else stored_text(store, writer, request)
        if written is None:
            spec["request"]["prompt"] = None
            out.pending.append(key)
        else:
            spec["request"]["prompt"] = written
            out.written[key] = written
    out.files = addressed.Files(CHUNKS, scanned=local)
    for number, start in enumerate(range(0, len(out.pending), CHUNK_ROWS)):
        members = out.pending[start : start + CHUNK_ROWS]
        data = canonical_json(
            {
                "rows": [
                    {
                        "folder": folder,
                        "image_id": image_id,
                        "describe": out.requests[(folder, image_id)],
                        # what the image was last made from: a chunk of the same requests written
                        # before, for another image, is not taken for this one
                        "made_from": _made_from(folder, image_id) if local else None,
                    }
                    for folder, image_id in members
                ]
            }
        ).encode("utf-8")
        path = out.files.add(str(number), data)
        out.chunk_rows[path] = members
        for key in members:
            out.chunk_of[key] = path
    if job_process and local:
        rejoin(out, specs)
    return out


def rejoin(describing, specs, root=CHUNKS):
    """A job's own process (a cluster executor) plans again after the main process did, when the
    prompts its write_prompts jobs wrote are stored: a row the main process had pending is known
    here, but its image job's input is still the chunk file (its request file is written by that
    job). So a known row whose request file is missing and which a chunk file on disk lists, with
    the same describe request, keeps that chunk file as its input."""
    missing = []
    for spec in specs:
        key = (spec["folder"], spec["image_id"])
        if key in describing.written and not request_path(spec).exists():
            missing.append(key)
    if not missing:
        return
    listed = {}
    for path in sorted(Path(root).glob("*.json")):
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for row in rows:
            listed[(row["folder"], row["image_id"], canonical_json(row["describe"]))] = str(path)
    for key in missing:
        path = listed.get((*key, canonical_json(describing.requests[key])))
        if path is not None:
            describing.chunk_of[key] = path


def _made_from(folder, image_id, images=IMAGES):
    try:
        return json.loads((Path(images) / folder / f"{image_id}.json").read_text(encoding="utf-8")).get(
            "request_sha256"
        )
    except (OSError, ValueError, AttributeError):
        return None


def known_specs(specs, describing):
    """The specs whose image job takes its request file as input (not those of a chunk)."""
    if describing is None or not describing.chunk_of:
        return specs
    return [s for s in specs if (s["folder"], s["image_id"]) not in describing.chunk_of]


def add_pending(requests, describing):
    """Planning: the image jobs of pending rows take their chunk file as input, and are to make."""
    if describing is None:
        return
    for key, path in describing.chunk_of.items():
        requests.paths[key] = path
        requests.to_make.add(key)


# ---------------------------------------------------------------------------------------------
# Writing (a real run's jobs)

_lock = threading.Lock()


def write_prompt(request, settings, log):
    """The prompt for ``request``: from the response store, else one call (retried as images are,
    stored the moment it arrives). Returns (text, how: "store" | "paid" | "offline")."""
    from image_batch.images import failures
    from image_batch.images.faults import RETRY, ROW, Fault, InvalidResponse, Refused, classify_local
    from image_batch.images.generate import NOT_STARTED, FaultError, NotStarted, _fetch, _retrying
    from image_batch.images.store import open_store, request_key

    writer = get_writer(request["provider"], settings)
    if not writer.paid:
        return writer.write(request), "offline"
    store = open_store(settings)
    key = request_key(request)
    unusable = 0
    try:
        with store.lock(key):
            for attempt in _retrying(settings.retry, log):
                with attempt:
                    number = attempt.retry_state.attempt_number
                    text = stored_text(store, writer, request)
                    if text is not None:
                        log(f"prompt served from the response store ({key[:12]}); no API call")
                        return text, "store"
                    reason = failures.stop_reason()
                    if reason:
                        raise FaultError(Fault("stopped", f"not attempted: the run stopped ({reason})"), number)
                    stopping = failures.stopped_here()
                    if stopping:
                        raise NotStarted(f"{NOT_STARTED}{stopping}")
                    log(
                        f"calling {request['provider']} model {request['model']} to write the prompt (attempt {number})"
                    )
                    try:
                        raw = _fetch(writer, request)
                    except Exception as exc:
                        fault = writer.classify(exc, request) or classify_local(exc)
                        if fault is None:
                            raise
                        raise FaultError(fault, number) from None
                    store.keep(key, request, raw, "live", log)  # paid for: kept before it is read
                    log(f"answer stored as {key[:12]} (request id {raw.headers.get('x-request-id')})")
                    try:
                        text, usage = writer.text(raw, request)
                    except InvalidResponse as exc:
                        store.reject(key, str(exc))
                        if isinstance(exc, Refused):
                            raise FaultError(Fault(ROW, str(exc), code=exc.code), number) from None
                        unusable += 1
                        if unusable >= settings.retry.max_unusable:
                            raise FaultError(Fault(ROW, f"{unusable} unusable answers; last: {exc}"), number) from None
                        raise FaultError(Fault(RETRY, str(exc)), number) from None
                    _note_paid(request, usage)
                    return text, "paid"
    except FaultError as exc:
        from image_batch.images.faults import FATAL

        if exc.fault.disposition == FATAL:
            failures.stop_run(exc.fault.reason)
        raise PromptFailed(f"the prompt could not be written: {exc.fault.reason}") from None


def _note_paid(request, usage):
    """This run paid for a prompt: it and its cost go to the run's ledger (the cost report)."""
    from image_batch.run import ledger

    ledger.record_prompt(request, usage)


def _write_text(folder, image_id, text):
    path = prompt_file(folder, image_id)
    write_if_changed(path, text.encode("utf-8"))


def _write_each(describing, keys, settings, log, concurrency=CONCURRENCY):
    """The prompts of ``keys`` (store first), ``concurrency`` at a time, each into its prompt file:
    (written {key: text}, failed keys, why calls were not started). A failed row is said in the log."""
    from image_batch.images.generate import NotStarted

    lock = threading.Lock()
    written, failed, stopped = {}, [], []

    def one(key):
        def say(message):
            with lock:
                log(f"{key[0]}/{key[1]}: {message}")

        try:
            text, _ = write_prompt(describing.requests[key], settings, say)
        except NotStarted as exc:
            stopped.append(str(exc))
            return
        except PromptFailed as exc:
            say(f"FAILED: {exc}")
            failed.append(key)
            return
        _write_text(*key, text)
        written[key] = text

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, keys))
    return written, failed, stopped


def write_chunk(plan, output, log_file, settings, concurrency=CONCURRENCY):
    """The write_prompts job: the prompts of one chunk (concurrently, store first), each row's
    prompt file, then the chunk file itself. A row that fails is said in the log and left to its
    image job (which tries once more and fails that image alone); a stopping run writes no chunk
    file (its rows are pending again next time)."""
    from image_batch.images.generate import NotStarted

    describing = plan.describing
    path = str(output)
    members = describing.chunk_rows.get(path)
    if members is None:
        raise UserError(f"{path} is not a chunk of this run's plan; run without naming it")
    with JobLog(log_file) as log:
        _, failed, stopped = _write_each(describing, members, settings, log, concurrency)
        if stopped:
            raise NotStarted(f"prompts not written: {stopped[0]}")
        describing.files.write(Path(path).name, output, log=None)
        log(f"wrote {len(members) - len(failed)} prompt(s); {len(failed)} failed")


def image_request(plan, wildcards, given, settings):
    """The image job's request file: ``given`` (its input) when planning knew the prompt (the prompt
    file is written if missing); for a pending row (describe: on, its prompt written in this run),
    the request built now from the written prompt (store first), written as the content-named file
    the next plan will find."""
    describing = getattr(plan, "describing", None)
    if describing is None:
        return given
    folder, image_id = wildcards.folder, wildcards.image_id
    key = (folder, image_id)
    if key in describing.written and key not in describing.chunk_of:
        if not prompt_file(folder, image_id).exists():
            _write_text(folder, image_id, describing.written[key])
        return given
    text = describing.written.get(key)
    if text is None:
        with JobLog(LOGS / folder / f"{image_id}.log") as log:
            text, _ = write_prompt(describing.requests[key], settings, log)
    _write_text(folder, image_id, text)
    spec = plan.spec_of(folder, image_id)
    spec = {**spec, "request": {**spec["request"], "prompt": text}}
    data = spec_bytes(spec)
    path = request_path(spec, data)
    if not path.exists():
        named, _ = addressed.scan(Path(SPEC_ROOT) / folder)
        others = [str(path.parent / n) for n in named.get(image_id, ()) if n != path.name]
        addressed.write(path, data, others)
    return str(path)


# ---------------------------------------------------------------------------------------------
# The manifest


def write_manifest(specs, path):
    """The manifest with ``describe`` on: the description and the prompt used (read from each
    row's prompt file when planning did not know it yet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "context", "folder", "description", "prompt", "provider", "model"])
    for spec in specs:
        request = spec["request"]
        prompt = request["prompt"]
        if prompt is None:
            try:
                prompt = prompt_file(spec["folder"], spec["image_id"]).read_text(encoding="utf-8")
            except OSError:
                prompt = ""
        writer.writerow(
            [
                spec["image_id"],
                spec["context"],
                spec["folder"],
                spec.get("description", ""),
                prompt,
                request["provider"],
                request["model"],
            ]
        )
    return write_if_changed(path, buffer.getvalue().encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Costs: the estimate before a run, and what each paid prompt cost

TYPICAL_OUTPUT_TOKENS = 150  # a prompt of two to four sentences, when the store has no own answers yet
CHARS_PER_TOKEN = 4


def estimate_specs(specs, describing):
    """``specs`` for the image estimate: a pending row's prompt is not written yet; it is counted at
    a typical written prompt's length (each its own request: none is taken as shared or stored)."""
    if describing is None or not describing.pending:
        return specs
    out = []
    for spec in specs:
        if spec["request"]["prompt"] is None:
            filler = f"(prompt of {spec['folder']}/{spec['image_id']}, not written yet)"
            prompt = filler.ljust(TYPICAL_OUTPUT_TOKENS * CHARS_PER_TOKEN)
            spec = {**spec, "request": {**spec["request"], "prompt": prompt}}
        out.append(spec)
    return out


def text_usage(usage):
    """A text answer's usage as the bill reads it (its output is text, not image tokens)."""
    usage = usage or {}
    details_in = usage.get("input_tokens_details") or {}
    out = int(usage.get("output_tokens") or 0)
    return {
        "input_tokens": int(usage.get("input_tokens") or 0),
        "input_tokens_details": {"text_tokens": int(usage.get("input_tokens") or 0), "image_tokens": 0}
        | ({"cached_tokens": int(details_in["cached_tokens"])} if details_in.get("cached_tokens") else {}),
        "output_tokens": out,
        "output_tokens_details": {"image_tokens": 0, "text_tokens": out},
    }


def text_cost(catalog, model, usage, origin="live"):
    from image_batch.costs.bill import answer_cost

    return answer_cost(catalog, model, text_usage(usage), origin)


def _in_recorded_batches(settings, describing):
    """The store keys the batches recorded earlier and not collected yet cover (read only)."""
    if not getattr(writer_class(describing.writer), "batch", False):
        return set()
    from image_batch.images.batch import waiting_batches
    from image_batch.images.gemini_batch import waiting
    from image_batch.images.store import open_store

    store = open_store(settings)
    return {key for entry in waiting_batches(store, strict=False) + waiting(store) for key in entry.get("keys") or ()}


def estimate_writing(settings, describing):
    """What writing the pending prompts will cost (an estimate: input tokens from the instructions'
    and descriptions' lengths, output tokens from your own stored answers for the model, else a
    typical prompt's), or None with describe off."""
    if describing is None:
        return None
    out = {"prompts": len(describing.requests), "to_write": len(describing.pending), "writer": describing.writer}
    out.update(model=settings.describe.model, usd=0.0, basis=None)
    if not describing.paid or not describing.pending:
        return out
    from image_batch.costs.catalog import load_catalog
    from image_batch.images.store import open_store, request_key

    catalog = load_catalog(settings.catalog_path)
    means = open_store(settings).usage_means().get((settings.describe.model, None, None)) or {}
    output = means.get("output_tokens")
    out["basis"] = (
        f"your {means['n']} stored answer(s) for the model" if output is not None else "a typical prompt's length"
    )
    output = TYPICAL_OUTPUT_TOKENS if output is None else output
    total = 0.0
    # a row's variants share its prompt: one call (the store's lock serves the others)
    distinct = {canonical_json(describing.requests[key]): describing.requests[key] for key in describing.pending}
    out["to_write"] = len(distinct)
    # prompts in a batch an earlier (stopped) run submitted: collected when it ends, not paid again
    covered = _in_recorded_batches(settings, describing)
    out["in_batch"] = sum(1 for request in distinct.values() if request_key(request) in covered)
    distinct = {k: request for k, request in distinct.items() if request_key(request) not in covered}
    for request in distinct.values():
        tokens_in = -(-(len(request["instructions"]) + len(request["input"])) // CHARS_PER_TOKEN)
        cost = text_cost(catalog, request["model"], {"input_tokens": tokens_in, "output_tokens": round(output)})
        if cost["usd"] is None:
            out.update(usd=None, why=cost.get("why"))
            return out
        total += cost["usd"]
    if settings.mode == "batch" and getattr(writer_class(describing.writer), "batch", False):
        total *= catalog.batch_discount(describing.writer)  # they go in a batch (write_before_batch)
        out["basis"] += ", at the batch price"
    out["usd"] = round(total, 6)
    return out


def describe_estimate(e):
    """The estimate of prompt writing as one line."""
    from image_batch.costs.bill import money

    if e["writer"] == "offline":
        return f"prompts: {e['prompts']} written by the offline writer (no model called, no cost)"
    head = f"prompts: {e['to_write']} of {e['prompts']} to write with {e['writer']} model {e['model']}"
    if not e["to_write"]:
        return head + (", the rest served from the response store (no cost)" if e["to_write"] < e["prompts"] else "")
    if e["usd"] is None:
        return f"{head}: unpriced ({e.get('why')})"
    batched = (
        f"; {e['in_batch']} of them in batches submitted earlier: collected when they end, not paid again"
        if e.get("in_batch")
        else ""
    )
    return (
        f"{head}, the rest served from the response store: about {money(e['usd'])} "
        f"(an estimate: tokens from the descriptions' and instructions' lengths, output from {e['basis']}){batched}"
    )


def tell(describing, estimate=None, out=sys.stderr):
    if describing is None:
        return
    if describing.writer == "offline":
        print(f"Image.Batch: {OFFLINE_NOTE}", file=out)
    if estimate is not None:
        print(f"Image.Batch: {describe_estimate(estimate)}", file=out)


def batch_prompts(describing, settings, log, live=False):
    """Batch mode, a writer with a Batch API (OpenAI: ``/v1/responses`` lines): the pending prompts go
    through images.batch.BatchRunner (submitted once, recorded, collected into the response store at
    the batch price). Returns the keys of the prompts a line did not answer (written live after).
    ``live``: submit nothing; only the batches earlier runs recorded for these prompts are collected,
    or waited for (see :meth:`BatchRunner.settle`)."""
    from image_batch.images.batch import BatchRunner
    from image_batch.images.gemini_batch import GeminiBatchRunner
    from image_batch.images.store import open_store
    from image_batch.providers import RawResponse
    from image_batch.run import ledger

    if describing.writer == "gemini":
        runner = GeminiBatchRunner(settings, log)
    else:
        runner = BatchRunner(settings, log, provider=describing.writer)
    runner.provider = get_writer(describing.writer, settings)
    requests = {key: describing.requests[key] for key in describing.pending}
    specs = [{"request": request} for request in requests.values()]
    if not live:
        result = runner.run(specs)
    elif describing.writer == "gemini":
        result = runner.run(specs, live=True, abandon=settings.batch.abandon)
    else:
        result = runner.settle(specs, abandon=settings.batch.abandon, noun="prompt(s)")
    bought = set(result.get("bought") or ())
    store = open_store(settings)
    left = []
    for key, request in requests.items():
        found = store.lookup(request, request.get("base_url"))
        if found is None:
            left.append(key)
            continue
        if found.key in bought:
            raw = RawResponse(body=found.entry["body"], headers=found.entry.get("headers") or {})
            ledger.record_prompt(request, runner.provider.text(raw, request)[1], origin="batch")
            bought.discard(found.key)  # rows sharing a request: paid once
    return left


def write_before_batch(plan, settings, out=sys.stderr):
    """Batch mode (a real run, before the images' batches): the pending prompts are written first,
    through the writer's Batch API when it has one (else live, said in one line), so that the images
    are batched with their prompts."""
    describing = plan.describing
    if describing is None or not describing.pending:
        return
    pending = describing.pending
    with JobLog(LOGS / "before-batch.log", echo=True) as log:
        if getattr(writer_class(describing.writer), "batch", False):
            log(f"describe with mode: batch: {len(pending)} prompt(s) to write go in a batch first, then the images")
            pending = batch_prompts(describing, settings, log)
            if pending:
                log(f"{len(pending)} prompt(s) the batch did not write are written LIVE now")
        else:
            log(
                f"describe with mode: batch: writing {len(pending)} prompt(s) LIVE first ({describing.writer} "
                "prompts do not go through its Batch API yet), then the images go in batches"
            )
    _write_all(plan, settings)


def settle_before_live(plan, settings):
    """Live mode (a real run, before its jobs): the prompts' batches an earlier batch-mode run left
    (stopped while waiting) are collected, or waited for (batch.abandon: cancelled), as the images'
    are, so the write_prompts jobs find those prompts in the response store: never paid again live."""
    from image_batch.images.batch import waiting_batches
    from image_batch.images.gemini_batch import waiting
    from image_batch.images.store import open_store

    describing = plan.describing
    if describing is None or not describing.pending or not getattr(writer_class(describing.writer), "batch", False):
        return
    store = open_store(settings)
    if not (waiting(store) if describing.writer == "gemini" else waiting_batches(store)):
        return  # no batch was left running: nothing to look at
    with JobLog(LOGS / "before-batch.log", echo=True) as log:
        batch_prompts(describing, settings, log, live=True)


def _write_all(plan, settings):
    """Each pending prompt, store first (those a batch bought are served from it), into its prompt
    file and its image's spec."""
    from image_batch.images.generate import NotStarted

    describing = plan.describing
    with JobLog(LOGS / "before-batch.log") as log:
        written, _, stopped = _write_each(describing, describing.pending, settings, log)
    for key, text in written.items():
        plan.spec_of(*key)["request"]["prompt"] = text
    if stopped:
        raise NotStarted(stopped[0])  # the run is stopping: no batch is submitted
