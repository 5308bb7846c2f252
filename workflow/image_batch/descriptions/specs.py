"""Per-image request files ("specs") and the manifest.

Each row's request (provider, model, size, quality, prompt, ...) is the file
``results/specs/<folder>/<image_id>.<digest16>.json``, named by its content (image_batch.common.
addressed). Planning writes none: a changed request is a new name, missing, which a real run's
write_request job writes, and Snakemake then makes that image again. Editing one row makes one
image stale; touching the sheet or changing code makes none.
"""

import csv
import hashlib
import io
import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

from image_batch.common import addressed
from image_batch.common.errors import SheetError, UserError
from image_batch.common.fileio import atomic_write_bytes, canonical_json, write_if_changed
from image_batch.descriptions import references, row_settings
from image_batch.providers import provider_class

SPEC_ROOT = Path("results/specs")
IMAGES = Path("results/images")
# An image's sidecar is written by its image job but not declared as an output of it (with local
# files: a second output per image job costs Snakemake a sixth of its own work, benchmarks/shape.py).
# An image whose PNG is there without its sidecar is made again (from the response store) through
# a marker file, named by the PNG's size and time, that its job takes as input (remake_marker).
REMAKE_ROOT = SPEC_ROOT / "_remake"
MANIFEST = Path("results/manifest.csv")


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


def build_specs(rows, settings, provider_name, sheet_path, environ=None, row_requests=None):
    """Spec dicts for every row, in sheet order (a row's variants after it).  Checks the final
    prompt's length, the per-row settings and the variants (descriptions.row_settings).
    ``row_requests``: a row_settings.RowRequests to use (its combinations are checked afterwards)."""
    params = provider_class(provider_name).request_params(settings.section(provider_name), environ)
    per_row = row_requests or row_settings.RowRequests(settings, provider_name, environ)
    per_row.default_params = params
    limit = settings.max_prompt_chars
    global_variant = settings.variant
    default_variants = settings.variants
    specs, problems, counts = [], [], {}
    seen, folder = {}, references.sheet_folder(sheet_path)  # each picture looked at once
    for row in rows:
        prompt = build_prompt(row, settings)
        if limit and len(prompt) > limit:
            problems.append(
                f"{row.place}, column description: the prompt made from it is {len(prompt)} "
                f"characters long; the model allows at most {limit}"
            )
        name, row_params, count = provider_name, params, default_variants
        if row.settings:
            name, row_params, bad = per_row.of(row)
            problems += [f"{row.place}, column {column}: {text}" for column, text in bad]
            count, bad_count = row_settings.variants_of(row, default_variants)
            if bad_count:
                problems.append(f"{row.place}, column {row_settings.VARIANTS}: {bad_count}")
            if row_params is None:
                continue
        else:
            per_row.default_used = True
        request = {"provider": name, **row_params, "prompt": prompt}
        variant = "/".join(v for v in (global_variant, row.variant) if v)
        if variant:
            request["variant"] = variant
        spec = {"image_id": row.image_id, "context": row.context, "folder": row.folder, "request": request}
        if row.reference or row.mask:  # pictures to edit: their hashes join the request
            references.attach(row, spec, name, folder, problems, seen)
        specs.append(spec)
        if count > 1:
            counts[row.image_id] = count
            for k in range(2, count + 1):
                specs.append(
                    {
                        **spec,  # the row's pictures too
                        "image_id": row_settings.variant_id(row.image_id, k),
                        "request": {**spec["request"], row_settings.CANDIDATE: k},
                        "row": row.image_id,
                    }
                )
    if counts:
        problems += row_settings.collisions(rows, counts)
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


def spec_bytes(spec):
    """The bytes of a spec's request file (its sidecar's ``request_sha256`` is their SHA-256)."""
    return canonical_json(spec).encode("utf-8")


def request_path(spec, data=None, root=SPEC_ROOT):
    """``<root>/<folder>/<image_id>.<digest16>.json``: the request file named by its content."""
    data = spec_bytes(spec) if data is None else data
    return Path(root) / spec["folder"] / addressed.name(spec["image_id"], data)


def _made(folder, image_id, images):
    """When the image was made (its PNG's time: its job writes the sidecar right after the PNG, and
    ``snakemake --touch`` touches the PNG alone, its only declared output), or None when the PNG or
    the sidecar is missing; and the PNG's stat when the PNG is there without its sidecar (else None)."""
    stem = os.path.join(images, folder, image_id)  # (strings: once per image, every plan)
    try:
        png = os.stat(f"{stem}.png")
    except FileNotFoundError:
        return None, None
    if os.path.exists(f"{stem}.json"):
        return png.st_mtime, None
    return None, png


def remake_marker(folder, image_id, png):
    """(path, bytes) of the marker that makes again an image whose PNG (``png``: its stat) is there
    without its sidecar: ``results/specs/_remake/<folder>/<image_id>.<digest16>.json``, named by
    its content, which holds the PNG's size and time. A real run's write_remake_marker job writes
    it (a target of the run: see image_batch.common.addressed); the image job, which takes it as
    input, is then due and makes its PNG and sidecar again from the response store. The image made
    again has another time: a sidecar lost again later names another marker. A marker already there
    and not newer than the PNG (written by a run stopped before the image job, the PNG's time in
    the future) would make nothing due: the next name is taken then (``"again"``)."""
    again = 0
    while True:
        content = {
            "image": f"{folder}/{image_id}",
            "png": {"size": png.st_size, "mtime_ns": png.st_mtime_ns},
            "why": "the PNG was there without its sidecar: the image is made again (from the response store)",
        }
        if again:
            content["again"] = again
        data = canonical_json(content).encode("utf-8")
        path = REMAKE_ROOT / folder / addressed.name(image_id, data)
        try:
            if path.stat().st_mtime <= png.st_mtime:
                again += 1
                continue
        except FileNotFoundError:
            pass
        return str(path), data


def drop_sidecar(path):
    """An image job's first step (with local files, where the sidecar is no declared output): its
    sidecar goes, as Snakemake has deleted its PNG, so that a job that fails leaves no sidecar of
    another answer beside no PNG."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pictures_newer(spec, sheet, made, mtimes):
    """Whether a reference picture (or mask) of ``spec``, a declared input of its image job, is newer
    than the image: Snakemake reruns the job then."""
    for path in references.input_files(spec, sheet):
        if path not in mtimes:
            try:
                mtimes[path] = os.stat(path).st_mtime
            except OSError:
                mtimes[path] = None
        if mtimes[path] is not None and mtimes[path] > made:
            return True
    return False


@dataclass
class Requests:
    """What planning decided about the request files, without writing any."""

    paths: dict = field(default_factory=dict)  # (folder, image_id) -> the image job's input
    to_make: set = field(default_factory=set)  # images Snakemake will (re)make
    new: int = 0  # request files a real run will write (new or changed requests)
    due: list = field(default_factory=list)  # those files (targets of the run: see common.addressed)
    superseded: dict = field(default_factory=dict)  # (folder, image_id) -> its other request files
    adopt: dict = field(default_factory=dict)  # (folder, image_id) -> (earlier layout's file, new name)
    unmade: set = field(default_factory=set)  # images whose PNG or sidecar is missing (local files only)
    # of those, the images whose PNG is there: (folder, image_id) -> (marker path, bytes): remake_marker
    remake: dict = field(default_factory=dict)


def plan_requests(specs, root=SPEC_ROOT, images=IMAGES, local=True, protect_paid=False, sheet=None):
    """Each image's request file and whether its image is to make, from one listing of each
    folder of ``root`` and the images' times: nothing is written.

    An image is to make when its PNG or sidecar is missing, its request file is missing (a new or
    changed request: a real run's write_request job writes it, and Snakemake then makes the image),
    or the file is newer than the image (written by a run that did not finish the image).

    A request file of the earlier layout (``<image_id>.json``, before files were named by their
    content) that holds exactly this request and is not newer than the image keeps the image up to
    date: the image job's input is that file, and a real run gives it its new name (``adopt``).

    With ``sheet`` (the sheet's path), a row's local reference pictures count too: one newer than
    the image (touched, even unchanged) makes Snakemake rerun its job (a declared input), which the
    store then serves: counted as to make, so the plan and estimate say what will run.

    ``local=False`` (a storage provider holds the files): every image counted as to make.
    With ``protect_paid`` (the offline generator chosen only because no key is set), refuse to
    remake an image that a paid provider made: it would be replaced by a placeholder."""
    out = Requests()
    listings, pictures = {}, {}  # pictures: path -> mtime (None: missing), each stat'ed once
    replaced_paid = []
    root = str(root)
    for spec in specs:
        folder, image_id = spec["folder"], spec["image_id"]
        key = (folder, image_id)
        data = spec_bytes(spec)
        # request_path's, as strings (pathlib's parsing, once per image, was a tenth of planning)
        name = addressed.name(image_id, data)
        directory = os.path.join(root, folder)
        path = os.path.join(directory, name)
        out.paths[key] = path
        if not local:
            out.to_make.add(key)
            out.due.append(path)  # storage says whether it is there
            continue
        if folder not in listings:
            listings[folder] = addressed.scan(directory)
        named, plain = listings[folder]
        ours = named.get(image_id, ())
        others = [os.path.join(directory, n) for n in ours if n != name]
        legacy = Path(directory, f"{image_id}.json") if f"{image_id}.json" in plain else None
        made, png_alone = _made(folder, image_id, images)
        if made is None:
            out.unmade.add(key)
            if png_alone is not None:
                out.remake[key] = remake_marker(folder, image_id, png_alone)
        if name in ours:
            try:
                stale = made is None or made < os.stat(path).st_mtime
            except FileNotFoundError:
                stale, written = True, False
            else:
                written = True
        else:
            written = False
            stale = not (made is not None and legacy is not None and _same_and_older(legacy, data, made))
            if not stale:
                out.paths[key] = str(legacy)
                out.adopt[key] = (str(legacy), path)
        if not written and stale:
            out.new += 1
            out.due.append(path)
            if legacy is not None:
                others.append(str(legacy))
        if others:
            out.superseded[key] = others
        if not stale and sheet is not None and spec.get("references"):
            stale = _pictures_newer(spec, sheet, made, pictures)
        if stale:
            out.to_make.add(key)
            if protect_paid and made is not None and paid_image(spec, images):
                replaced_paid.append(image_id)
    if replaced_paid:
        raise UserError(
            f"{len(replaced_paid)} image(s) in results/ were made by a paid provider (e.g. "
            f"{replaced_paid[0]!r}) but no API key is set now, so the offline generator would replace "
            "them with placeholders. Set AI_API_KEY, or set provider: offline in the config if you "
            "really want placeholders."
        )
    return out


def _same_and_older(legacy, data, made):
    try:
        return legacy.stat().st_mtime <= made and legacy.read_bytes() == data
    except OSError:
        return False


def adopt(pairs):
    """A real run (under the run lock): give each adopted request file of the earlier layout its
    new name, with its time (a hard link: same bytes, same mtime), so later runs find it there."""
    for legacy, new in pairs:
        if os.path.exists(new):
            continue
        try:
            os.link(legacy, new)
        except FileExistsError:
            continue
        except FileNotFoundError:
            continue  # gone since planning: the next run plans a new request file
        except OSError:  # a filesystem without hard links: a copy with the same time
            stat = os.stat(legacy)
            atomic_write_bytes(new, Path(legacy).read_bytes(), durable=True)
            os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def write_request(spec, path, superseded=(), log=None):
    """The write_request job (a real run): the request file of ``spec`` at ``path`` (its name must
    be that of its content), after deleting the image's other request files (and their logs)."""
    addressed.write(path, spec_bytes(spec), superseded, log)


def request_digest(data):
    """The SHA-256 of a request file's bytes: each sidecar records the one its image was made from."""
    return hashlib.sha256(data).hexdigest()


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
