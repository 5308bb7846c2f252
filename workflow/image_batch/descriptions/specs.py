"""Per-image request files ("specs") and the manifest.

Each row becomes ``results/specs/<folder>/<image_id>.json`` holding the exact request that defines
its image (provider, model, size, quality, prompt, ...).  A spec is rewritten only when its content
changes, so its mtime moves only then, and Snakemake rebuilds exactly the images whose request
changed: editing one row makes one image stale; touching the CSV or changing code makes none.
"""

import csv
import hashlib
import io
import json
import os
import string
from pathlib import Path

from image_batch.common.errors import SheetError, UserError
from image_batch.common.fileio import canonical_json, write_if_changed
from image_batch.providers import provider_class

SPEC_ROOT = Path("results/specs")
IMAGES = Path("results/images")
MANIFEST = Path("results/manifest.csv")
INDEX_NAME = "_index.json"  # spec path -> SHA-256 of its content, so a no-op run reads one file, not N


def spec_path(folder, image_id, root=SPEC_ROOT):
    return Path(root) / folder / f"{image_id}.json"


def image_files(folder, image_id, images=IMAGES):
    """(PNG, sidecar) of an image. (Not with_suffix: an id may hold dots, "fox.v2".)"""
    folder = Path(images) / folder
    return folder / f"{image_id}.png", folder / f"{image_id}.json"


def image_made(folder, image_id, images=IMAGES):
    """Whether an image's PNG and sidecar are both there."""
    return all(path.exists() for path in image_files(folder, image_id, images))


def _template_for(row, settings):
    per_context = settings.context_templates or {}
    return per_context.get(row.context) or per_context.get(row.folder) or settings.prompt_template


def build_prompt(row, settings):
    """The description as written, or the configured template with {description}, {context},
    {image_id} and {folder} filled in."""
    template = _template_for(row, settings)
    if not template:
        return row.description
    values = {"description": row.description, "context": row.context, "image_id": row.image_id, "folder": row.folder}
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        unknown = fields - values.keys()
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        return template.format_map(values)
    except (KeyError, ValueError, IndexError) as exc:
        raise UserError(
            f"prompt template {template!r} is not valid ({exc}); it may use {{description}}, "
            "{context}, {image_id} and {folder}"
        ) from None


def build_specs(rows, settings, provider_name, sheet_path, environ=None):
    """Spec dicts for every row, in sheet order.  Checks the final prompt's length."""
    params = provider_class(provider_name).request_params(settings.section(provider_name), environ)
    limit = settings.max_prompt_chars
    global_variant = settings.variant
    specs, problems = [], []
    for row in rows:
        prompt = build_prompt(row, settings)
        if limit and len(prompt) > limit:
            problems.append(
                f"{row.place}, column description: the prompt made from it is {len(prompt)} "
                f"characters long; the model allows at most {limit}"
            )
        request = {"provider": provider_name, **params, "prompt": prompt}
        variant = "/".join(v for v in (global_variant, row.variant) if v)
        if variant:
            request["variant"] = variant
        specs.append({"image_id": row.image_id, "context": row.context, "folder": row.folder, "request": request})
    if problems:
        raise SheetError(sheet_path, problems)
    return specs


def _paid(provider_name):
    try:
        return provider_class(provider_name).paid
    except UserError:
        return False


def paid_image(spec, images=IMAGES):
    """Whether this spec's image exists and was made by a paid provider (its sidecar says so)."""
    png, sidecar = image_files(spec["folder"], spec["image_id"], images)
    try:
        made_by = json.loads(sidecar.read_text(encoding="utf-8")).get("provider")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(made_by) and _paid(made_by) and png.exists()


def write_specs(specs, root=SPEC_ROOT, protect_paid=False, only_missing=False, images=IMAGES):
    """Write each spec whose content changed; return how many were (re)written.

    With ``protect_paid`` (the offline generator chosen only because no key is set), refuse to
    replace the request of an image that a paid provider made and that exists: that would
    overwrite a paid image with a placeholder. (Only images that exist count: request files alone,
    written by a dry run or an estimate with a key, protect nothing.)"""
    planned = []
    replaced_paid = []
    index_path = Path(root) / INDEX_NAME
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        index = {}
    new_index = {}
    for spec in specs:
        path = spec_path(spec["folder"], spec["image_id"], root)
        data = canonical_json(spec).encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        new_index[str(path)] = digest
        if index.get(str(path)) == digest and os.path.exists(path):
            continue
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old == data or (only_missing and old is not None):
            continue
        if protect_paid and paid_image(spec, images):
            replaced_paid.append(spec["image_id"])
        planned.append((path, data))
    if replaced_paid:
        raise UserError(
            f"{len(replaced_paid)} image(s) in results/ were made by a paid provider (e.g. "
            f"{replaced_paid[0]!r}) but no API key is set now, so the offline generator would replace "
            "them with placeholders. Set AI_API_KEY, or set provider: offline in the config if you "
            "really want placeholders."
        )
    for path, data in planned:
        write_if_changed(path, data)
        _keep_made_image_fresh(path, data, images)
    if only_missing:
        index_path.unlink(missing_ok=True)  # some specs were left as they were: re-check all next time
    else:
        write_if_changed(index_path, json.dumps(new_index, sort_keys=True).encode("utf-8"))
    return len(planned)


def request_digest(data):
    """The SHA-256 of a request file's bytes: each sidecar records the one its image was made from."""
    return hashlib.sha256(data).hexdigest()


def _keep_made_image_fresh(path, data, images):
    """A request file written back to what its existing image was made from (after a dry run tried
    other settings, say) is dated before the image: the image is not stale, as it was not changed."""
    spec = json.loads(data)
    png, sidecar = image_files(spec["folder"], spec["image_id"], images)
    try:
        made_from = json.loads(sidecar.read_text(encoding="utf-8")).get("request_sha256")
        made = min(png.stat().st_mtime, sidecar.stat().st_mtime)
    except (OSError, ValueError, AttributeError):
        return
    if made_from == request_digest(data):
        os.utime(path, (made - 1, made - 1))


def needs_image(spec, root=SPEC_ROOT, images=IMAGES):
    """Whether Snakemake will (re)make this spec's image: PNG or sidecar missing, or older than the
    spec (the workflow's mtime rule).  Images already made are never paid for again."""
    png, sidecar = image_files(spec["folder"], spec["image_id"], images)
    try:
        made = min(png.stat().st_mtime, sidecar.stat().st_mtime)
        return made < spec_path(spec["folder"], spec["image_id"], root).stat().st_mtime
    except FileNotFoundError:
        return True


def write_manifest(specs, path=MANIFEST):
    """The clean manifest: one line per image with its folder and final prompt."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "context", "folder", "prompt", "provider", "model"])
    for spec in specs:
        request = spec["request"]
        writer.writerow(
            [
                spec["image_id"],
                spec["context"],
                spec["folder"],
                request["prompt"],
                request["provider"],
                request["model"],
            ]
        )
    return write_if_changed(path, buffer.getvalue().encode("utf-8"))
