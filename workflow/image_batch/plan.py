"""What the Snakefile runs while it is parsed (also on --dry-run): validate the sheet and bring the
per-image specs, the manifest and the destination record up to date."""

import sys
from dataclasses import dataclass
from pathlib import Path

from .fileio import canonical_json, write_if_changed
from .settings import Settings, load_dotenv_file, resolve
from .sheet import read_sheet
from .specs import build_specs, write_manifest, write_specs

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
    rewritten: int


def prepare(config, announce=True):
    load_dotenv_file(".env")
    settings = resolve(config)
    sheet = config["input_csv"]
    rows = read_sheet(sheet, config.get("max_prompt_chars"))
    specs = build_specs(rows, config, settings.provider, sheet)
    protect_paid = config.get("provider", "auto") == "auto" and settings.provider == "offline"
    rewritten = write_specs(specs, protect_paid=protect_paid)
    write_manifest(specs)
    write_if_changed(DESTINATION_RECORD, canonical_json(settings.destination.as_dict()).encode("utf-8"))
    if announce:
        if settings.provider == "offline":
            print(OFFLINE_BANNER, file=sys.stderr)
        print(
            f"Image.Batch: {len(specs)} images from {sheet} with provider {settings.provider} "
            f"({settings.provider_note}); {rewritten} new or changed request(s); "
            f"sync to {settings.destination.describe()}",
            file=sys.stderr,
        )
    return Plan(settings, [(s["folder"], s["image_id"]) for s in specs], rewritten)
