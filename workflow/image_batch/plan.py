"""What the Snakefile runs while it is parsed (also on --dry-run): validate the sheet and bring the
per-image specs, the manifest and the destination record up to date."""

import sys
from dataclasses import dataclass
from pathlib import Path

from . import chunks as chunking
from . import cost
from . import failures, runlock
from .fileio import canonical_json, write_if_changed
from .settings import Settings, load_dotenv_file, resolve
from .sheet import read_sheet
from .providers import PROVIDERS
from .specs import build_specs, needs_image, write_manifest, write_specs
from .store import ResponseStore, request_key, store_root

DESTINATION_RECORD = Path("results/specs/_destination.json")

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
    images: list  # (folder, image_id) in sheet order
    chunks: dict  # chunk id -> [(folder, image_id)]
    rewritten: int
    lines: dict  # image_id -> line in the sheet
    sheet: str

    def failure_summary(self):
        return failures.summary(self.images, self.lines, self.sheet)


def prepare(config, announce=True, lock=False, dry_run=False, write=True):
    """Validate the sheet and refresh specs, manifest and destination record.  With ``lock`` (the
    main process of a real run) also take the run lock and clear the previous run's stop flag.
    With ``write=False`` (a job process of a cluster executor, which re-reads the Snakefile: its
    inputs come from the main process) only read the sheet and plan; write nothing."""
    load_dotenv_file(".env")
    settings = resolve(config)
    sheet = config["input_csv"]
    rows = read_sheet(sheet, config.get("max_prompt_chars"))
    specs = build_specs(rows, config, settings.provider, sheet)
    other_run, lock_note = runlock.acquire(dry_run=dry_run, store_root=store_root(config)) if lock else (None, "")
    if lock and not dry_run:
        failures.clear_stop()
    protect_paid = config.get("provider", "auto") == "auto" and settings.provider == "offline"
    # A dry run beside a live run only adds specs for new rows: rewriting a spec the live run is
    # building from would make its (old) image look newer than the edited request.
    rewritten = 0
    if write:
        rewritten = write_specs(specs, protect_paid=protect_paid, only_missing=bool(other_run))
        write_manifest(specs)
        write_if_changed(DESTINATION_RECORD, canonical_json(settings.destination.as_dict()).encode("utf-8"))
    if announce:
        if lock_note:
            print(f"Image.Batch: {lock_note}", file=sys.stderr)
        if settings.provider == "offline":
            print(OFFLINE_BANNER, file=sys.stderr)
        print(
            f"Image.Batch: {len(specs)} images from {sheet} with provider {settings.provider} "
            f"({settings.provider_note}); {rewritten} new or changed request(s); "
            f"sync to {settings.destination.describe()}",
            file=sys.stderr,
        )
        store = ResponseStore(store_root(config))
        paid = PROVIDERS[settings.provider].paid
        guess = cost.estimate(specs, config.get("prices"), needs_image, lambda r: store.path(request_key(r)).exists())
        print(f"Image.Batch: {cost.describe_estimate(guess, paid)}", file=sys.stderr)
    if lock and not dry_run and config.get("mode") == "batch" and settings.provider == "openai":
        from .batch import run_before_jobs

        run_before_jobs(specs, config)
    images = [(s["folder"], s["image_id"]) for s in specs]
    chunks = chunking.assign(images)
    if write:
        chunking.write_members(chunks)
    return Plan(settings, images, chunks, rewritten, {row.image_id: row.line for row in rows}, str(sheet))
