"""What the Snakefile runs while it is parsed (also on --dry-run): validate the sheet and bring the
per-image specs, the manifest and the destination record up to date."""

import sys
from dataclasses import dataclass
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import canonical_json, floor_mtimes, write_if_changed
from image_batch.common.settings import Settings, load_dotenv_file, resolve
from image_batch.costs import cost
from image_batch.descriptions.sheet import read_sheet
from image_batch.descriptions.specs import SPEC_ROOT, build_specs, needs_image, write_manifest, write_specs
from image_batch.images import failures
from image_batch.images.store import is_remote, open_store, request_key, store_root
from image_batch.providers import PROVIDERS
from image_batch.run import lock as runlock
from image_batch.sync import chunks as chunking

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


def prepare(config, announce=True, lock=False, dry_run=False, write=True, local_images=True):
    """Validate the sheet and refresh specs, manifest and destination record.  With ``lock`` (the
    main process of a real run) also take the run lock and clear the previous run's stop flag.
    With ``write=False`` (a job process of a cluster executor, which re-reads the Snakefile: its
    inputs come from the main process) only read the sheet and plan; write nothing.  With
    ``local_images=False`` (a storage provider holds the images) nothing is judged from results/images."""
    load_dotenv_file(".env")
    settings = resolve(config)
    sheet = config["input_csv"]
    rows = read_sheet(sheet, config.get("max_prompt_chars"))
    specs = build_specs(rows, config, settings.provider, sheet)
    root = store_root(config)
    other_run, lock_note = (
        runlock.acquire(dry_run=dry_run, store_root=None if is_remote(root) else root) if lock else (None, "")
    )
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
    if config.get("mode") == "batch" and not local_images:
        # It would have to know which images storage holds already, or it would pay for them again.
        raise UserError(
            "mode: batch is not supported with a default storage provider yet: run batch mode on "
            "one machine (or a shared filesystem), or use mode: live"
        )
    batch_now = lock and not dry_run and config.get("mode") == "batch" and settings.provider == "openai"
    # One look at every image (stat of PNG, sidecar and spec), shared by the estimate, batch mode
    # and the chunks. With a storage provider the images are not here: every one counts as to make.
    to_make = [s for s in specs if needs_image(s)] if (announce or write or batch_now) and local_images else specs
    if announce:
        store = open_store(config)
        paid = PROVIDERS[settings.provider].paid
        making = {id(s) for s in to_make}
        guess = cost.estimate(
            specs, config.get("prices"), lambda s: id(s) in making, lambda r: store.has(request_key(r))
        )
        seen = "" if local_images else " (images in storage are not looked at: every image counted as to make)"
        print(f"Image.Batch: {cost.describe_estimate(guess, paid)}{seen}", file=sys.stderr)
    if batch_now:
        from image_batch.images.batch import run_before_jobs

        run_before_jobs(to_make, config)
    images = [(s["folder"], s["image_id"]) for s in specs]
    chunks = chunking.assign(images)
    if write:
        chunking.write_members(chunks)
        if not local_images:
            floor_mtimes(SPEC_ROOT)  # the plan files are staged into storage (whole-second times)
        else:
            # Snakemake does not remake a missing intermediate file when what depends on it is up
            # to date: a deleted PNG would stay missing behind an up-to-date sync marker. Touching
            # its chunk's member list makes that chunk's digest, and so the image, due again.
            chunking.touch(chunks, {(s["folder"], s["image_id"]) for s in to_make})
    return Plan(settings, images, chunks, rewritten, {row.image_id: row.line for row in rows}, str(sheet))
