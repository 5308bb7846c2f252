"""Reference pictures and masks: a row that names pictures (sheet column ``reference``, paths
relative to the sheet's folder, ``;``-separated; optional column ``mask``, one PNG) becomes an edit
request (OpenAI ``/v1/images/edits``, Gemini ``inline_data`` parts).

Identity. The request (its file, its response-store key) holds the SHA-256 of each picture and of
the mask, in order: never their bytes, never a path (renaming a picture or moving the project pays
for nothing; replacing one makes its rows stale and misses the store). The spec, outside the
request, names each picture as the sheet does (relative to the sheet's folder), so the image job
can read it; the picture files are declared inputs of that job (Snakemake reruns a row whose
picture is newer: a picture touched but unchanged is then served from the store, nothing paid).

Checks, while planning, before any call, one line each naming sheet, row and column: missing,
unreadable, a folder, too large, not an image (Pillow decodes it; the type is read from the content,
never the name), a type or a number the provider does not take, a mask that is not a PNG, too large,
without transparency or not of the first picture's size, and a reference on a provider that takes
none. Each distinct picture is read and hashed once a process (by path, size, mtime and ctime), so many
rows sharing one logo cost one read; what a real run learnt is kept (CACHE_FILE), so later dry runs
read no unchanged picture at all.

A picture may be named by an ``https://`` address: a real run's planning fetches it (once: the
copy is kept under results/references/ by the run's start, with the address in urls.json, and later
runs use the copy); a dry run fetches nothing and says what a real run would fetch.
"""

import base64
import dataclasses
import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes

MB = 1024 * 1024
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Limits:
    """What a provider takes as reference pictures."""

    max_images: int
    max_bytes: int  # each picture
    formats: tuple = ("PNG", "JPEG", "WEBP")
    mask_bytes: int = 0  # 0: no mask
    max_total_bytes: int = 0  # all pictures of one request together (0: no limit of its own)
    endpoint: str | None = None  # the request's endpoint when it has pictures


# OpenAI: /v1/images/edits takes up to 16 images (png, webp, jpg, each under 50 MB) and a PNG mask
# under 4 MB with the first image's size. Gemini: up to 14 inline_data parts; an inline request
# stays under 20 MB. The offline generator draws placeholders: it ignores the pictures (one note).
LIMITS = {
    "openai": Limits(16, 50 * MB, mask_bytes=4 * MB, endpoint="images/edits"),
    "gemini": Limits(14, 20 * MB, max_total_bytes=20 * MB),
    "offline": Limits(16, 50 * MB, mask_bytes=4 * MB),
}
NOT_WITH_STORAGE = (
    "reference pictures are not supported with a default storage provider yet (the jobs would need the "
    "pictures, which go nowhere but to the API): run the rows with a reference on one machine or a shared "
    "filesystem"
)


def limits_for(provider_name):
    from image_batch.providers import provider_class

    found = LIMITS.get(provider_name)
    if found is None:
        found = getattr(provider_class(provider_name), "reference_limits", None)
    return found


def names(cell):
    """The pictures a ``reference`` cell names, in order (``;``-separated, blanks dropped)."""
    return [part.strip() for part in (cell or "").split(";") if part.strip()]


@dataclass(frozen=True)
class Picture:
    sha256: str
    format: str  # Pillow's name, read from the content
    width: int
    height: int
    size: int
    alpha: bool
    kept: str | None = None  # a picture fetched from a URL: its copy under results/references/


class _Bad(Exception):
    pass


_cache = {}  # (real path, size, mtime_ns, ctime_ns) -> Picture or _Bad: each distinct picture read once a process
_cache_lock = threading.Lock()
_sizes = {}  # sha256 -> bytes, of the pictures planning attached (batch_problems)

# What earlier real runs learnt of each picture, by its path (as the run names it), size, mtime and ctime:
# a dry run of 100,000 rows with their own photos reads none of them again. Planning only reads it;
# a real run saves what its planning learnt (save_cache, from the run's start: planning writes nothing).
CACHE_FILE = Path("results/references/pictures.json")
# (ctime too: a picture replaced by one of the same size with its mtime kept, by cp -p, rsync -a or a
# restore, has a new ctime, which nothing sets back)
_disk = {"loaded": None}  # path -> [size, mtime_ns, sha256, format, width, height, alpha, ctime_ns]
_learnt = {}  # what this process read that the file did not know


def _known(path, stat):
    if _disk["loaded"] is None:
        try:
            found = json.loads(CACHE_FILE.read_text(encoding="utf-8"))
            _disk["loaded"] = found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            _disk["loaded"] = {}
    entry = _disk["loaded"].get(str(path))
    try:
        size, mtime_ns, digest, fmt, width, height, alpha, ctime_ns = entry  # (older entries: read again)
    except (TypeError, ValueError):
        return None
    if (size, mtime_ns, ctime_ns) != (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns):
        return None
    return Picture(digest, fmt, width, height, size, bool(alpha))


def save_cache():
    """A real run (its start): keep what planning learnt of the pictures, for the next dry runs.
    Entries of pictures that are gone are dropped. (Concurrent runs: the last one's file wins.)"""
    if not _learnt:
        return
    try:
        kept = json.loads(CACHE_FILE.read_text(encoding="utf-8"))
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    kept = {path: entry for path, entry in kept.items() if os.path.exists(path)}
    kept.update(_learnt)
    atomic_write_bytes(CACHE_FILE, json.dumps(kept, sort_keys=True).encode("utf-8"), durable=False)
    _learnt.clear()


def _inspect(path, limit):
    """The :class:`Picture` at ``path`` (read once a process while unchanged); raises _Bad."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise _Bad("no such file") from None
    except OSError as exc:
        raise _Bad(f"cannot be read ({exc.strerror or exc})") from None
    if not os.path.isfile(path):
        raise _Bad("is a folder, not a picture")
    if stat.st_size > limit:
        raise _Bad(f"is {stat.st_size / MB:.1f} MB; the provider takes pictures under {limit // MB} MB")
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _cache_lock:
        found = _cache.get(key)
    if found is None:
        found = _known(path, stat)
    if found is None:
        try:
            found = _read(path)
        except _Bad as exc:
            found = exc
        else:
            entry = [stat.st_size, stat.st_mtime_ns, found.sha256, found.format, found.width, found.height]
            _learnt[str(path)] = entry + [found.alpha, stat.st_ctime_ns]
        with _cache_lock:
            _cache[key] = found
    if isinstance(found, _Bad):
        raise found
    return found


def _read(path):
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _Bad(f"cannot be read ({exc.strerror or exc})") from None
    return _picture(data)


def _picture(data):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, width, height = image.format, image.width, image.height
            alpha = "A" in image.getbands() or "transparency" in image.info
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _Bad(f"is not a picture Pillow can read ({exc})") from None
    return Picture(hashlib.sha256(data).hexdigest(), fmt, width, height, len(data), alpha)


def _problem(row, column, text):
    return f"{row.place}, column {column}: {text}"


def attach(row, spec, provider_name, sheet_dir, problems, memo=None):
    """Give ``spec`` (and its request) the row's reference pictures and mask, or add ``problems``.
    ``memo`` (a dict kept by the caller for one planning): each path looked at once, however many
    rows name it."""
    memo = {} if memo is None else memo
    refs, mask = names(getattr(row, "reference", "")), (getattr(row, "mask", "") or "").strip()
    if not refs and not mask:
        return
    if not refs:
        problems.append(_problem(row, "mask", "a mask needs a picture to edit: name it in column reference"))
        return
    limits = limits_for(provider_name)
    if limits is None:
        problems.append(
            _problem(row, "reference", f"provider {provider_name} takes no reference pictures: use openai or gemini")
        )
        return
    found, bad = [], False
    if len(refs) > limits.max_images:
        problems.append(
            _problem(
                row, "reference", f"{len(refs)} pictures; provider {provider_name} takes at most {limits.max_images}"
            )
        )
        bad = True
    for name in refs:
        picture = _check(row, "reference", name, sheet_dir, limits.max_bytes, problems, memo)
        if picture is None:
            bad = True
            continue
        if picture is TO_FETCH:  # a dry run: the picture of an address not fetched yet
            found.append((name, picture))
            continue
        if picture.format not in limits.formats:
            problems.append(
                _problem(
                    row,
                    "reference",
                    f"{name} is a {picture.format} picture; provider {provider_name} takes "
                    f"{', '.join(f.lower() for f in limits.formats)}",
                )
            )
            bad = True
        found.append((name, picture))
    sizes = [p.size for _, p in found if p is not TO_FETCH]
    if not bad and limits.max_total_bytes and sum(sizes) > limits.max_total_bytes:
        total = sum(sizes) / MB
        problems.append(
            _problem(
                row,
                "reference",
                f"the pictures together are {total:.1f} MB; provider {provider_name} takes under "
                f"{limits.max_total_bytes // MB} MB in one request",
            )
        )
        bad = True
    mask_picture = None
    if mask:
        if not limits.mask_bytes:
            problems.append(_problem(row, "mask", f"provider {provider_name} takes no mask: leave the column empty"))
            bad = True
        else:
            if "://" in mask:
                problems.append(_problem(row, "mask", f"{mask}: a mask must be a file, not an address"))
                bad = True
            mask_picture = None if bad else _check(row, "mask", mask, sheet_dir, limits.mask_bytes, problems, memo)
            bad = bad or mask_picture is None
            if mask_picture is not None:
                first = found[0][1] if found and found[0][1] is not TO_FETCH else None
                text = None
                if mask_picture.format != "PNG":
                    text = f"{mask} is a {mask_picture.format} picture; a mask must be a PNG"
                elif not mask_picture.alpha:
                    text = f"{mask} has no transparency; a mask's transparent pixels mark what to change"
                elif first is not None and (mask_picture.width, mask_picture.height) != (first.width, first.height):
                    text = (
                        f"{mask} is {mask_picture.width}x{mask_picture.height}; a mask must have the size of "
                        f"the first picture, {refs[0]} ({first.width}x{first.height})"
                    )
                if text:
                    problems.append(_problem(row, "mask", text))
                    bad = True
    if not bad and limits.endpoint == "images/edits" and spec["request"].get("moderation") is not None:
        bad = _no_moderation(row, problems, memo)
    if bad:
        return
    request = spec["request"]
    if limits.endpoint:
        request["endpoint"] = limits.endpoint
    for _, picture in found + ([(mask, mask_picture)] if mask_picture is not None else []):
        if picture is not TO_FETCH:
            _sizes[picture.sha256] = picture.size
    # (a dry run names an address not fetched yet by the address: a real run has its hash)
    request["references"] = [f"to fetch: {name}" if p is TO_FETCH else p.sha256 for name, p in found]
    spec["references"] = [_entry(name, picture) for name, picture in found]
    if mask_picture is not None:
        request["mask"] = mask_picture.sha256
        spec["mask"] = {"path": mask, "sha256": mask_picture.sha256}


def _no_moderation(row, problems, memo):
    """A row with pictures whose request has ``moderation``: /v1/images/edits, as the client sends it,
    takes no such setting, so it would be part of the row's identity and never sent. Its own cell
    is refused at the row; the config's value in one line for the sheet. Returns True (refused)."""
    if any(column == "moderation" for column, _ in getattr(row, "settings", ())):
        problems.append(
            _problem(
                row,
                "moderation",
                "this row has reference pictures (an edit request) and OpenAI's image edits take no "
                "moderation setting: leave the cell empty",
            )
        )
    elif not memo.get("moderation refused"):
        memo["moderation refused"] = True
        problems.append(
            _problem(
                row,
                "reference",
                "config openai.moderation is set, and rows with reference pictures (this one first) are "
                "edit requests, which take no moderation setting: unset openai.moderation and give the "
                "rows without pictures that want it a moderation column",
            )
        )
    return True


def _entry(name, picture):
    if picture is TO_FETCH:
        return {"path": name, "sha256": None}
    entry = {"path": name, "sha256": picture.sha256}
    if picture.kept:
        entry["kept"] = picture.kept
    return entry


def _check(row, column, name, sheet_dir, limit, problems, memo):
    """The :class:`Picture` named ``name``, or None with the problem added (each name looked at once)."""
    found = memo.get((name, limit))
    if found is None:
        found = memo[(name, limit)] = _look(name, sheet_dir, limit)
    if isinstance(found, _Bad):
        problems.append(_problem(row, column, str(found)))
        return None
    return found


def _look(name, sheet_dir, limit):
    if "://" in name:
        return _url_picture(name, limit)
    if os.path.isabs(name):
        return _Bad(f"{name}: name the picture relative to the sheet's folder, not by an absolute path")
    try:
        return _inspect(Path(sheet_dir) / name, limit)
    except _Bad as exc:
        where = f" (paths are relative to the sheet's folder, {sheet_dir or '.'})" if str(exc) == "no such file" else ""
        return _Bad(f"{name} {exc}{where}")


def sheet_folder(sheet_path):
    """The folder reference paths are relative to (as the run names it: relative stays relative)."""
    return os.path.dirname(str(sheet_path))


def input_files(spec, sheet_path):
    """The picture files of a spec (the image job's declared inputs), as paths of the run's folder."""
    folder = sheet_folder(sheet_path)
    # (a picture named by an address is no input: its copy is named by its content, in the request)
    files = [os.path.join(folder, ref["path"]) for ref in spec.get("references") or () if "://" not in ref["path"]]
    if spec.get("mask"):
        files.append(os.path.join(folder, spec["mask"]["path"]))
    return files


@dataclass
class Inputs:
    """The pictures of one edit request, read by its image job: never stored, logged or synced."""

    images: list  # [(file name, bytes, mime type)] in the sheet's order
    mask: tuple | None = None  # (file name, bytes, "image/png")


class ReferenceChanged(UserError):
    pass


def load(spec, sheet_path, cache=None):
    """The :class:`Inputs` of ``spec`` (None without pictures), each checked against its hash: a
    picture changed since planning is refused (its request would not be the one paid for).
    ``cache`` (a dict kept by the caller): each file read once for many specs."""
    if not spec.get("references"):
        return None
    folder = sheet_folder(sheet_path)
    cache = {} if cache is None else cache

    def read(entry):
        found = cache.get((entry["path"], entry["sha256"]))
        if found is None:
            found = cache[(entry["path"], entry["sha256"])] = read_file(entry)
        return found

    def read_file(entry):
        path = entry.get("kept") or os.path.join(folder, entry["path"])
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ReferenceChanged(f"reference {entry['path']} cannot be read now ({exc.strerror or exc})") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ReferenceChanged(f"reference {entry['path']} changed since the run was planned: run again")
        return (os.path.basename(path), data, _mime(data))

    images = [read(entry) for entry in spec["references"]]
    mask = read(spec["mask"]) if spec.get("mask") else None
    return Inputs(images, mask)


def _mime(data):
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def notes(specs, provider_name, mode="live"):
    """One line each about the rows with pictures, for the plan's warnings (none without them)."""
    count = sum(1 for spec in specs if spec.get("references") and not spec.get("row"))  # rows, not variants
    if not count:
        return []
    if _to_fetch:
        # (their requests hold the pictures' hashes, unknown before the fetch: not looked up in the store)
        waiting = sum(1 for spec in specs if _waits_for_fetch(spec))
        said = [
            f"{len(_to_fetch)} picture(s) named by an address are not fetched yet (e.g. {min(_to_fetch)}): a real "
            "run fetches each once and keeps it under results/references/ (this run fetched nothing); the "
            f"estimate counts their {waiting} image(s) as to pay, though the response store serves any it "
            "already holds once they are fetched"
        ]
        return said + notes_without_fetch(count, provider_name)
    return notes_without_fetch(count, provider_name)


def _waits_for_fetch(spec):
    return any(str(ref).startswith("to fetch: ") for ref in spec["request"].get("references") or ())


def notes_without_fetch(count, provider_name):
    if provider_name == "offline":
        return [
            f"{count} row(s) name reference pictures: the offline generator ignores them (its placeholders "
            "show the prompt only); with a key they are sent to the API"
        ]
    return []


# OpenAI's batch lines carry each picture as a data URL of at most 20,971,520 characters (the JSON
# body of /v1/images/edits: images[].image_url, mask.image_url)
DATA_URL_CHARS = 20_971_520


def data_url(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def batch_problems(specs, places, provider_name, mode):
    """Sheet problems of edit rows that batch mode cannot send (pictures too large for a data URL)."""
    if mode != "batch":
        return []
    problems = []
    for spec in specs:
        if spec["request"].get("provider", provider_name) != "openai":
            continue  # a row's own provider (per-row settings): Gemini's batches carry them inline
        if spec.get("row"):
            continue  # a variant of a row (row_settings): the row's own line says it
        entries = [("reference", e) for e in spec.get("references") or ()]
        entries += [("mask", spec["mask"])] if spec.get("mask") else []
        for column, entry in entries:
            size = _sizes.get(entry["sha256"], 0)
            if len("data:image/webp;base64,") + 4 * ((size + 2) // 3) > DATA_URL_CHARS:
                problems.append(
                    f"{places.get(spec['image_id'], spec['image_id'])}, column {column}: {entry['path']} is "
                    f"{size / MB:.1f} MB; in mode: batch OpenAI takes pictures up to 15 MB (sent as data URLs): "
                    "make it smaller or use mode: live"
                )
    return problems


# -- pictures named by an https:// address: fetched once and kept --------------------------------

KEPT = Path("results/references")  # <sha256>.<ext>, and urls.json: address -> the file kept for it
URL_INDEX = KEPT / "urls.json"
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
# Tests serve pictures on loopback without TLS: http://127.0.0.1 is taken only when this is set
LOOPBACK_VARIABLE = "IMAGE_BATCH_TEST_HTTP_LOOPBACK"
TO_FETCH = Picture("", "", 0, 0, 0, False)  # a dry run's stand-in for a picture not fetched yet
_fetch = {"allowed": False}
_fetched = {}  # address -> (Picture, bytes): fetched by this process's planning, kept by the run's start
_to_fetch = set()  # addresses a dry run would fetch
_index = {"loaded": None}


def allow_fetching(allowed):
    """Planning of a real run (its main process) fetches the addresses not kept yet; any other
    planning (a dry run, a report, a job elsewhere) fetches none and says what a real run would fetch."""
    _fetch["allowed"] = bool(allowed)


# What Snakemake's command line may ask for without running jobs: such an invocation fetches nothing.
_NOT_RUNNING = (
    "dryrun", "touch", "lint", "report", "list_rules", "list_target_rules", "dag", "rulegraph", "filegraph",
    "d3dag", "summary", "detailed_summary", "list_changes", "list_untracked", "containerize", "export_cwl",
    "archive", "cleanup_metadata", "cleanup_shadow", "unlock", "delete_all_output", "delete_temp_output",
    "print_compilation", "generate_unit_tests", "draft_notebook", "edit_notebook", "conda_create_envs_only",
    "conda_cleanup_envs",
)  # fmt: skip


def runs_jobs(argv):
    """Whether ``argv`` (sys.argv of the snakemake command) runs jobs: Snakemake does not tell a
    Snakefile being parsed whether this is a dry run, so its own parser reads the command line. An
    unparseable one fetches nothing (and a real run then stops before any job: see unfetched)."""
    from image_batch.common.snakemake_args import parsed

    args = parsed(argv)
    if args is None:
        return False
    return not any(getattr(args, name, None) for name in _NOT_RUNNING)


def unfetched():
    """A real run's start: the addresses its planning did not fetch (it must not go on), or None."""
    if _to_fetch:
        return (
            f"{len(_to_fetch)} reference picture(s) named by an address were not fetched (e.g. {min(_to_fetch)}): "
            "run snakemake without options that stop it from running jobs; nothing was called"
        )
    return None


def _address_allowed(url):
    if url.startswith("https://"):
        return True
    return os.environ.get(LOOPBACK_VARIABLE) == "1" and url.startswith("http://127.0.0.1:")


def _kept_for(url):
    if _index["loaded"] is None:
        try:
            found = json.loads(URL_INDEX.read_text(encoding="utf-8"))
            _index["loaded"] = found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            _index["loaded"] = {}
    entry = _index["loaded"].get(url)
    return str(KEPT / entry["file"]) if isinstance(entry, dict) and entry.get("file") else None


def _url_picture(url, limit):
    """The Picture of an address: the copy kept by an earlier run, else fetched now (a real run's
    planning: kept at its start), else TO_FETCH (any other planning)."""
    if not _address_allowed(url):
        return _Bad(f"{url}: only https:// addresses are fetched")
    kept = _kept_for(url)
    if kept is not None and os.path.exists(kept):
        try:
            return dataclasses.replace(_inspect(kept, limit), kept=kept)
        except _Bad:
            pass  # a kept copy that cannot be used: fetched again
    if url in _fetched:
        return _fetched[url][0]
    if not _fetch["allowed"]:
        _to_fetch.add(url)
        return TO_FETCH
    try:
        data = _download(url, limit)
        picture = _picture(data)
    except _Bad as exc:
        return _Bad(f"{url} {exc}")
    ext = EXTENSIONS.get(picture.format, picture.format.lower())
    picture = dataclasses.replace(picture, kept=str(KEPT / f"{picture.sha256}.{ext}"))
    _fetched[url] = (picture, data)
    return picture


def _download(url, limit):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            data = answer.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise _Bad(f"could not be fetched (HTTP {exc.code} {exc.reason})") from None
    except (OSError, ValueError) as exc:
        raise _Bad(f"could not be fetched ({getattr(exc, 'reason', None) or exc})") from None
    if len(data) > limit:
        raise _Bad(f"is larger than {limit // MB} MB; the provider takes pictures under {limit // MB} MB")
    return data


def keep_fetched():
    """A real run (its start, before any job): keep the pictures its planning fetched, and the
    addresses they came from, so no later run fetches them again."""
    if not _fetched:
        return
    try:
        index = json.loads(URL_INDEX.read_text(encoding="utf-8"))
        index = index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        index = {}
    for url, (picture, data) in sorted(_fetched.items()):
        if not os.path.exists(picture.kept):
            atomic_write_bytes(picture.kept, data)
        index[url] = {"file": os.path.basename(picture.kept), "sha256": picture.sha256}
    atomic_write_bytes(URL_INDEX, json.dumps(index, indent=1, sort_keys=True).encode("utf-8"))
    _index["loaded"] = index
    _fetched.clear()
