"""Planning: what the Snakefile computes while it is parsed (every dry run, estimate, --touch, --lint,
--report ... included). It reads and checks the sheet and the settings and computes the plan: it
writes nothing. The plan files staleness needs (each image's request file, the pages' member
lists) are named by their content (image_batch.common.addressed) and written
by rules of a real run when missing, so no dry run can change what a live or later run reads.
Everything that acts (the run lock, the stop flag, the destination record, batch submission,
paying) belongs to a real run: see image_batch.run.
"""

import dataclasses
import functools
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from image_batch.common import addressed
from image_batch.common.errors import SheetError, UserError
from image_batch.common.fileio import canonical_json, unwritable, unwritable_file
from image_batch.common.pages import paginate, source_slug
from image_batch.common.settings import Choices, Settings, load_dotenv_file, resolve
from image_batch.costs.catalog import load_catalog
from image_batch.costs.estimate import describe as describe_estimate
from image_batch.costs.estimate import estimate
from image_batch.descriptions import prompts, references, row_settings
from image_batch.descriptions.sheet import read_configured_sheet
from image_batch.descriptions.specs import IMAGES, build_specs, image_made, plan_requests, write_request
from image_batch.images import failures
from image_batch.images.store import open_store
from image_batch.providers import provider_class
from image_batch.sync import chunks as chunking
from image_batch.sync import preflight
from image_batch.sync.upload import SHEET_RECORDS, other_sheets_images, sheet_id, sheet_record_names

# an image's files, as a target on the command line (results/images/<folder>/<image_id>.png|.json)
IMAGE_TARGET = re.compile(re.escape(IMAGES.as_posix()) + r"/(?P<folder>[^/]+)/(?P<image_id>[^/]+)\.(?P<kind>png|json)")

RESULTS = "results"
DESTINATION_ROOT = Path("results/sync")

OFFLINE_BANNER = """
############################################################################
#  OFFLINE MODE: no AI_API_KEY is set, so images come from the built-in     #
#  offline generator. They are PLACEHOLDERS (the prompt's text on a colour  #
#  field), not AI-generated pictures. Set AI_API_KEY (environment or .env)  #
#  to generate real images.                                                 #
############################################################################
"""


@dataclass
class Plan:
    settings: Settings
    choices: Choices
    specs: list  # spec dicts, in sheet order
    images: list  # (folder, image_id) in sheet order
    chunks: dict  # chunk (page) name -> [(folder, image_id)]: image_batch.sync.chunks
    places: dict  # image_id -> where its row is ("line 7", "sheet 'Images', row 7")
    sheet: str
    rewritten: int = 0
    to_make: set = field(default_factory=set)  # (folder, image_id) whose image is missing or stale
    estimate: dict | None = None
    warnings: list = field(default_factory=list)
    endpoint: str | None = None  # where a paid provider's requests go
    missing: list = field(default_factory=list)  # PNGs deleted behind an up-to-date sync: targets
    removed: list = field(default_factory=list)  # images in results/images no row asks for any more
    made_only: set | None = None  # a report: the images that were made (the others are not shown)
    # what a run that does not act (a dry run) says at its end: a real run stops on these instead
    dry_notes: list = field(default_factory=list)
    keyless_estimate: dict | None = None  # no key: what the images would cost with one
    requests: object = None  # descriptions.specs.Requests: each image's request file
    source: str = ""  # the input sheet's folder of contact sheets and chunk digests (common.pages)
    pages: dict = field(default_factory=dict)  # page name -> common.pages.Page: contact sheets, chunks
    keys_missing: list = field(default_factory=list)  # rows on a provider whose key is not set: a real run stops
    describing: object = None  # descriptions.prompts.Describing (describe: on), else None
    prompt_estimate: dict | None = None  # what writing the prompts will cost (describe: on)

    @property
    def provider(self):
        """The class of the provider that makes this plan's images (the run's: rows may name others,
        see :attr:`providers`)."""
        return provider_class(self.choices.provider)

    @property
    def providers(self):
        """The names of the providers this plan's rows use (per-row settings may mix them)."""
        return self._providers or {self.choices.provider}

    @property
    def paid(self):
        return any(provider_class(name).paid for name in self.providers)

    @property
    def batch_capable(self):
        """Whether some paid provider of this plan has a Batch API."""
        return any(provider_class(name).paid and provider_class(name).batch for name in self.providers)

    @property
    def destination_record(self):
        """Where and how this plan's sync goes, as a file named by its content: a run that syncs
        elsewhere (or turns sync.delete_removed on) needs another file, made by the
        record_destination rule of a real run, so a dry run beside a live run can never change
        where the live run syncs, and a changed destination makes the sync due."""
        return DESTINATION_ROOT / f"destination-{self._destination_hash}.json"

    @property
    def synced_record(self):
        """The sync's own output for this destination: switching back to a destination synced
        before syncs again what changed since (one shared marker could not tell)."""
        return DESTINATION_ROOT / f"synced-{self._destination_hash}.json"

    @property
    def sheet_record(self):
        """The sync's record of the images this sheet asks for (named by the sheet as configured,
        the same in every process): another sheet's run in the folder does not take them for its
        removed rows."""
        return SHEET_RECORDS / f"{sheet_id(self.sheet)}.json"

    @property
    def sheet_record_before(self):
        """The images this sheet's record names now (the sync job rewrites it, after Snakemake has
        removed it)."""
        return sheet_record_names(self.sheet_record)

    @property
    def _destination_hash(self):
        # named by the sheet as configured (job processes elsewhere resolve it elsewhere)
        data = canonical_json({**self.destination_content, "sheet": self.sheet}).encode("utf-8")
        return hashlib.sha256(data).hexdigest()[:16]

    @property
    def destination_content(self):
        """Where and how to sync, and the sheet (resolved) whose sync it is: its images in the
        destination are its own (see image_batch.sync.upload.sheet_ledger)."""
        return {
            **self.choices.destination.as_dict(),
            "delete_removed": self.settings.sync.delete_removed,
            "sheet": os.path.realpath(self.sheet),
        }

    def spec_of(self, folder, image_id):
        return self._by_image[(folder, image_id)]

    def request_of(self, folder, image_id):
        """The input of the image's job (O(1): one look-up per job): its request file when the
        image exists and is stale (Snakemake sees the file missing, written by write_request, or
        newer than the image), none otherwise. An up-to-date image has nothing to compare, and an
        image not made yet is due anyway (its PNG missing; or its sidecar, through its marker:
        remake_of): its job writes its own request file (job_request), so a fresh run has one job
        per image, not two, and no DAG builds a candidate write_request job per existing request
        file. With a storage provider every
        image is stale (nothing is looked at). An image no row asks for gets a name no rule
        makes: Snakemake says its input is missing."""
        key = (folder, image_id)
        path = self.requests.paths.get(key)
        if path is None:
            return f"results/specs/{folder}/{image_id}.not-in-the-sheet"
        if key in self.requests.unmade or key not in self.requests.to_make:
            return []
        return path

    def job_request(self, wildcards, job_input):
        """The request file an image job reads: its input (request_of) or, without one (a real
        run, whatever made the job due: a missing image, -R, an incomplete image ...), the image's
        request file, written first when it is not there (after deleting the image's other
        request files, as write_request does)."""
        given = getattr(job_input, "spec", None)  # (no input function: image_jobs_take_inputs)
        if given:
            return given
        folder, image_id = wildcards.folder, wildcards.image_id
        key = (folder, image_id)
        path = self.requests.paths[key]
        if not os.path.exists(path):
            name = Path(path).name
            log = Path(RESULTS) / "logs" / "requests" / folder / f"{name[: -len('.json')]}.log"
            write_request(self.spec_of(folder, image_id), path, self.requests.superseded.get(key, ()), log)
        return path

    @functools.cached_property
    def image_jobs_take_inputs(self):
        """Whether any image job has an input (image_inputs: a stale image's request file, a row's
        reference pictures, a lost sidecar's marker). None has in a fresh plan or an unchanged one:
        the image rule then declares no input function, which Snakemake would call for every job
        it makes. An image no row asks for is refused before (check_targets). (image_inputs' answer
        for every image, from the sets it looks in: a request file is an input of an image to make
        that was made, request_of.)"""
        requests = self.requests
        if requests.remake or not requests.to_make <= requests.unmade:
            return True
        return any(self.references_of(s["folder"], s["image_id"]) for s in self.specs if s.get("references"))

    def check_targets(self, targets, sidecars_declared=False):
        """Refuse an image named on the command line (``snakemake results/images/<folder>/<id>.png``)
        that no row of the sheet asks for: its job would have nothing to make it from. And a
        sidecar named alone where it is no declared output (local files): its PNG is the target."""
        for target in targets:
            match = IMAGE_TARGET.fullmatch(
                os.path.relpath(target) if os.path.isabs(target) else os.path.normpath(target)
            )
            if match and (match["folder"], match["image_id"]) not in self._by_image:
                raise UserError(
                    f"{target}: no row of {self.sheet} asks for this image (image id "
                    f"{match['image_id']!r} in context folder {match['folder']!r}); name an image of "
                    "the sheet, or run without a target to make them all"
                )
            if match and match["kind"] == "json" and not sidecars_declared:
                raise UserError(
                    f"{target}: a sidecar is written by its image's job, beside the PNG: name the image, "
                    f"{IMAGES.as_posix()}/{match['folder']}/{match['image_id']}.png (a lost sidecar is made "
                    "again by any run)"
                )

    def image_inputs(self, folder, image_id):
        """The image job's inputs, by name (one input function, ``unpack``-ed): ``spec``
        (request_of), ``references`` (references_of) and ``remake`` (remake_of), those it has
        only: an up-to-date image's job gets ``{}``. (Snakemake's cost for an input function that
        returns no name is small; for one that returns empty names, a sixth of its own work for
        this workflow's shape: benchmarks/shape.py.)"""
        inputs = {}
        spec = self.request_of(folder, image_id)
        if spec:
            inputs["spec"] = spec
        pictures = self.references_of(folder, image_id)
        if pictures:
            inputs["references"] = pictures
        remake = self.remake_of(folder, image_id)
        if remake:
            inputs["remake"] = remake
        return inputs

    def remake_of(self, folder, image_id):
        """The marker of an image whose PNG is there without its sidecar (descriptions.specs.
        remake_marker): the input that makes its job due, since the sidecar is no declared output."""
        marker = self.requests.remake.get((folder, image_id))
        return marker[0] if marker else []

    def write_remake_marker(self, folder, image_id, output, log=None):
        """The write_remake_marker job (a real run): the marker planning named for this image,
        after deleting the image's earlier markers (of sidecars lost before)."""
        marker = self.requests.remake.get((folder, image_id))
        if marker is None or Path(output).name != Path(marker[0]).name:
            raise UserError(f"{output} is not a file of this run's plan; run without naming it")
        folder_path = Path(output).parent
        named = addressed.scan(folder_path)[0].get(image_id, ())
        earlier = [str(folder_path / name) for name in named if name != Path(output).name]
        addressed.write(output, marker[1], earlier, log)

    def references_of(self, folder, image_id):
        """The image job's picture inputs (descriptions.references; O(1): one look-up per job)."""
        spec = self._by_image.get((folder, image_id))
        return references.input_files(spec, self.sheet) if spec and spec.get("references") else []

    @property
    def due(self):
        """The plan files to write (new or changed): targets, so that their consumers run after
        them even where their outputs exist (see image_batch.common.addressed). Not the request
        files of images not made yet: their own jobs write them (job_request)."""
        unmade = self.requests.unmade
        if unmade:
            ours = {self.requests.paths[key] for key in unmade}
            requests = [path for path in self.requests.due if path not in ours]
        else:
            requests = self.requests.due
        due = requests + [path for path, _ in self.requests.remake.values()]
        return due + self.describing.due if self.describing else due

    def digest_of(self, chunk):
        """The digest of sync chunk ``chunk`` (a page of the sheet: image_batch.sync.chunks)."""
        return str(chunking.digest_path(self.source, chunk))

    def __post_init__(self):
        self._by_image = {(s["folder"], s["image_id"]): s for s in self.specs}
        self._providers = {s["request"]["provider"] for s in self.specs}

    def failure_summary(self):
        return failures.summary(self.images, self.places, self.sheet)


def check_models(settings, choices, specs, row_requests=None, sheet=None):
    """(problems, warnings): a model that shut down or a setting it does not take; notes. With
    ``row_requests`` (row_settings.RowRequests, as build_specs used it): each distinct row setting
    is checked once, and a problem with a setting made in a cell names the sheet, row and column."""
    if not specs:
        return [], []
    checks = []  # (provider, request without the prompt, where, prefix)
    if (row_requests is None or row_requests.default_used) and provider_class(choices.provider).paid:
        request = {k: v for k, v in specs[0]["request"].items() if k != "prompt"}
        if row_requests is not None:
            request = {"provider": choices.provider, **row_requests.default_params}
        checks.append((request, lambda setting: settings.origin(choices.provider, setting), ""))
    for provider, cells, row, params, count in row_requests.combinations() if row_requests is not None else ():
        if provider_class(provider).paid:
            request = {"provider": provider, **params}
            where = row_settings.where(settings, provider, cells)
            more = f" (also {count - 1} more row(s) with these settings)" if count > 1 else ""
            checks.append((request, where, (f"{sheet}, {row.place}", set(cells) | {"provider"}, more)))
    if not checks:
        return [], []
    catalog = load_catalog(settings.catalog_path)
    problems, warnings = [], []
    for request, where, prefix in checks:
        found, notes = catalog.check(request, where=where)
        if prefix:
            found = [_in_cell(problem, *prefix) for problem in found]
        problems += [p for p in found if p not in problems]
        warnings += [w for w in notes if w not in warnings]
    if settings.legacy_prices:
        warnings.append(
            "config: the `prices` section is no longer used: prices come from the model catalogue "
            f"({catalog.path}); remove the section to silence this"
        )
    return problems, warnings


def _in_cell(problem, place, cells, more=""):
    """A catalogue problem of a per-row combination, led by the sheet, row and column when the
    setting it names (``openai.quality ...``) was made in a cell."""
    head = problem.split(" ", 1)[0]
    setting = head.rsplit(".", 1)[-1]
    if "." in head and setting in cells:
        return f"{place}, column {setting}: {problem}{more}"
    return f"{place}: {problem}{more}"


def row_keys_missing(specs, choices, environ=None):
    """Notes for rows on a paid provider other than the run's whose API key is not set (a real run
    stops on them before any call), one per provider."""
    from image_batch.common.settings import unset_key

    notes, seen = [], {choices.provider}
    for spec in specs:
        name = spec["request"]["provider"]
        if name in seen:
            continue
        seen.add(name)
        variable = unset_key(name, environ)
        if variable:
            notes.append(
                f"row {spec.get('row') or spec['image_id']!r} (and any other on provider {name}) asks for provider "
                f"{name}, but {variable} is not set: set it (environment or .env), or empty its provider cell; "
                "a real run stops before any image"
            )
    return notes


def make_plan(settings, local_images=True, announce=True, only_made=False, guard_paid=True):
    """The plan for ``settings`` (it writes nothing). ``guard_paid=False`` (a job process of a
    cluster executor, or a report) skips the check that keeps placeholders from replacing paid
    images (the main process made it); ``local_images=False`` (a storage provider
    holds the images and plan files) judges nothing from results/; ``only_made`` (a report) plans
    only the images that were made (a report cannot show one that failed)."""
    load_dotenv_file(".env")
    choices = resolve(settings)
    sheet = settings.input_csv
    rows = read_configured_sheet(settings)
    # no key at all, or provider: offline in the config ("always the offline generator, no cost"):
    # a row naming a paid provider is a placeholder too
    placeholders = bool(choices.keyless_paid) or choices.provider == "offline"
    row_requests = row_settings.RowRequests(settings, choices.provider, placeholders=placeholders)
    specs = build_specs(rows, settings, choices.provider, sheet, row_requests=row_requests)
    problems, warnings = check_models(settings, choices, specs, row_requests, sheet)
    keys_missing = row_keys_missing(specs, choices)
    warnings += row_settings.overridden(settings, row_requests, sheet)
    used = {s["request"]["provider"] for s in specs}  # the providers of the rows
    warnings += references.notes(specs, choices.provider, settings.mode)
    too_large = references.batch_problems(
        specs, {row.image_id: row.place for row in rows}, choices.provider, settings.mode
    )
    if too_large:
        raise SheetError(sheet, too_large)
    # (a job process plans again once prompts are stored: see prompts.rejoin)
    describing = prompts.plan_describe(settings, choices, specs, rows, local=local_images, job_process=not guard_paid)
    keyless_specs = None
    if choices.keyless_paid:
        # No key, so placeholders: but the settings a key would use are checked and priced now
        # (the person deciding whether to buy a key is the one who most needs the estimate).
        keyless_rows = row_settings.RowRequests(settings, choices.keyless_paid)
        keyless_specs = build_specs(rows, settings, choices.keyless_paid, sheet, row_requests=keyless_rows)
        keyed = dataclasses.replace(choices, provider=choices.keyless_paid)
        refused, notes = check_models(settings, keyed, keyless_specs, keyless_rows, sheet)
        note = "(no API key is set, so this run makes placeholders; with a key it would stop)"
        warnings += [f"{problem} {note}" for problem in refused]
        warnings += notes
    destination_note = preflight.check_planned(choices.destination)
    if announce and any(provider_class(name).paid for name in used):
        # before the store is read (look-ups, the estimate): a store that cannot be used is one line
        open_store(settings).preflight()
    if not local_images and any(spec.get("references") for spec in specs):
        # the jobs run where the sheet's pictures are not, and the pictures must not go to storage
        raise UserError(references.NOT_WITH_STORAGE)
    if settings.mode == "batch" and not local_images:
        # It would have to know which images storage holds already, or it would pay for them again.
        raise UserError(
            "mode: batch is not supported with a default storage provider yet: run batch mode on "
            "one machine (or a shared filesystem), or use mode: live"
        )
    if settings.mode == "batch" and not any(provider_class(name).batch for name in used):
        warnings.append(f"mode: batch has no effect with the {choices.provider} provider: images are made one by one")
    plan = Plan(
        settings,
        choices,
        specs,
        [(s["folder"], s["image_id"]) for s in specs],
        {},
        _places(rows, specs),
        str(sheet),
        warnings=warnings,
        dry_notes=[note for note in (destination_note, choices.missing_key, *keys_missing) if note],
        describing=describing,
    )
    plan.keys_missing = keys_missing
    plan.endpoint = _endpoint(specs, choices.provider)
    protect_paid = settings.provider == "auto" and choices.provider == "offline"
    plan.requests = plan_requests(
        prompts.known_specs(specs, describing),
        local=local_images,
        protect_paid=protect_paid and guard_paid,
        sheet=settings.input_csv,
    )
    prompts.add_pending(plan.requests, describing)
    plan.rewritten = plan.requests.new
    plan.to_make = plan.requests.to_make
    if guard_paid:
        # a folder or file made by another user (a container run as root) fails here, not each image
        # after paying (Snakemake itself refuses write-protected outputs, naming no fix)
        refuse_unwritable(unwritable(RESULTS, PER_IMAGE_FOLDERS))
        if local_images:
            # the per-image files of the images to make (the others are not written)
            refuse_unwritable(unwritable_file(path for image in sorted(plan.to_make) for path in image_files(*image)))
    if problems:
        # Refused before any call when there is something to pay for; a report, or a rebuild that
        # the response store serves whole, asks nothing of the model and goes on (with the warning).
        store = open_store(settings)
        to_pay = [s for s in specs if (s["folder"], s["image_id"]) in plan.to_make]
        to_pay = [s for s in to_pay if not store.has_answer(s["request"], s["request"].get("base_url"))]
        if to_pay and not only_made:
            lines = [f"the settings cannot be used for the {len(to_pay)} image(s) to pay for (nothing was called):"]
            raise UserError("\n".join(lines + [f"  {p}" for p in problems]))
        plan.warnings += [f"{p} (nothing is asked of it in this run)" for p in problems]
    if announce:
        plan.estimate = _estimate(plan, prompts.estimate_specs(specs, describing))
        plan.prompt_estimate = prompts.estimate_writing(settings, describing)
        if keyless_specs:
            # with a key every request differs (every placeholder is made again): what is to make is
            # judged on the keyed requests' own files, computed, not written
            keyed_requests = plan_requests(keyless_specs, local=local_images)
            plan.keyless_estimate = _estimate(plan, keyless_specs, choices.keyless_paid, keyed_requests.to_make)
    plan.source = source_slug(settings.input_csv, settings.input_sheet)
    plan.pages = paginate(plan.images)  # the contact sheets' pages, and the sync's chunks
    plan.chunks = chunking.assign(plan.pages)
    if only_made:
        made = {image for image in plan.images if image_made(*image)}
        plan.chunks = {chunk: [m for m in members if m in made] for chunk, members in plan.chunks.items()}
        plan.made_only = made
    if local_images:
        missing = plan.requests.unmade - plan.requests.remake.keys()
        plan.missing = chunking.missing_behind(plan.chunks, missing, plan.source)
        plan.removed = removed_rows(plan.images, others=other_sheets_images(os.path.realpath(plan.sheet)))
    if announce:
        tell(plan, local_images)
    return plan


def _places(rows, specs):
    """image_id -> where its row is; a row's variants (``x-2``...) are where the row is."""
    places = {row.image_id: row.place for row in rows}
    for spec in specs:
        if "row" in spec:
            places[spec["image_id"]] = places.get(spec["row"], "?")
    return places


def _endpoint(specs, provider):
    """Where the run's provider's requests go (the first row on it; else the first row's)."""
    for spec in specs:
        if spec["request"]["provider"] == provider:
            return spec["request"].get("base_url")
    return specs[0]["request"].get("base_url") if specs else None


# thousands of files each (their folders are looked at; the thumbnails are written by rename)
PER_IMAGE_FOLDERS = ("images", "specs", "logs/images", "logs/failures", "bucket", "contact-sheets/.thumbnails")


def image_files(folder, image_id):
    """The files of ``results/`` one image job writes (strings: built for every image to make)."""
    return [
        f"{IMAGES}/{folder}/{image_id}.png",
        f"{IMAGES}/{folder}/{image_id}.json",
        f"{RESULTS}/logs/images/{folder}/{image_id}.log",
    ]


def refuse_unwritable(blocked):
    if blocked is not None:
        raise UserError(
            f"{blocked} is not writable by the user running the workflow (uid {os.getuid()}; made by another "
            f'user, or by a container run as root?): make it yours (sudo chown -R "$(id -u):$(id -g)" '
            f"{RESULTS}) or run as its owner, then run again (nothing was called)"
        )


def removed_rows(images, root=IMAGES, others=None):
    """``folder/image_id`` of the images in ``root`` that no row of the sheet asks for any more,
    nor another sheet synced from this folder (``others``: {``folder/image_id``: sheet})."""
    wanted = {f"{folder}/{image_id}.png" for folder, image_id in images}
    wanted |= {f"{name}.png" for name in others or ()}
    found = []
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir():
                found += [f"{folder.name}/{png.name}" for png in folder.glob("*.png")]
    return sorted(name[: -len(".png")] for name in found if name not in wanted)


def _answer_checks(store):
    """store.has_answer for many requests, each at its own endpoint (rows may use several
    providers): STORE.json read once per endpoint, not once per request."""
    checks = {}

    def has_answer(request):
        endpoint = request.get("base_url")
        if endpoint not in checks:
            checks[endpoint] = store.answer_check(endpoint)
        return checks[endpoint](request)

    return has_answer


def _estimate(plan, specs=None, provider=None, to_make=None):
    """The estimate of the plan's images; with ``specs`` and ``provider``: of those requests (what
    the images would cost with the key that is not set)."""
    specs = plan.specs if specs is None else specs
    paid = provider_class(provider).paid if provider else plan.paid
    catalog = load_catalog(plan.settings.catalog_path) if paid else None
    store = open_store(plan.settings) if paid else None
    means = store.usage_means() if paid else {}
    in_batch = None
    if paid and (provider_class(provider).batch if provider else plan.batch_capable):
        from image_batch.images.batch import waiting_batches
        from image_batch.images.gemini_batch import waiting as gemini_waiting
        from image_batch.images.store import request_key

        recorded = waiting_batches(store, strict=False) + gemini_waiting(store)
        covered = {key for entry in recorded for key in entry.get("keys") or ()}
        in_batch = (lambda r: request_key(r) in covered) if covered else None
    return estimate(
        specs,
        catalog,
        lambda s: (s["folder"], s["image_id"]) in (plan.to_make if to_make is None else to_make),
        _answer_checks(store) if paid else (lambda r: False),
        means,
        paid,
        in_batch,
    )


def tell(plan, local_images=True, out=sys.stderr):
    """What the plan is, for the person running it: one line each."""
    if plan.choices.provider == "offline" and "offline" in plan.providers:
        print(OFFLINE_BANNER, file=out)
    for warning in plan.warnings:
        print(f"Image.Batch: WARNING: {warning}", file=out)
    others = sorted(plan.providers - {plan.choices.provider})
    also = f", rows of the sheet on {', '.join(others)}" if others else ""
    print(
        f"Image.Batch: {len(plan.specs)} images from {plan.sheet} with provider {plan.choices.provider} "
        f"({plan.choices.provider_note}{also}); "
        f"sync to {plan.choices.destination.describe()}",
        file=out,
    )
    if plan.removed:
        delete = plan.settings.sync.delete_removed
        print(
            f"Image.Batch: {len(plan.removed)} image(s) in results/images no row asks for any more "
            f"(e.g. {plan.removed[0]}): not synced"
            + ("; deleted from the destination if unchanged since synced (sync.delete_removed)" if delete else "")
            + ("; the response store keeps their answers" if plan.paid else ""),
            file=out,
        )
    prompts.tell(plan.describing, plan.prompt_estimate, out)
    if plan.estimate is not None:
        lines = describe_estimate(plan.estimate, plan.paid)
        if plan.keyless_estimate is not None:
            keyed = describe_estimate(plan.keyless_estimate, True)
            keyed[0] = keyed[0].replace(
                "estimate:", f"with an API key ({plan.choices.keyless_paid}; not set, not used in this run):", 1
            )
            lines += keyed
        seen = "" if local_images else " (images in storage are not looked at: every image counted as to make)"
        lines[0] += seen
        for line in lines:
            print(f"Image.Batch: {line}", file=out)
