"""Group images into chunks for the sync stage.

One sync job over all N images would hash every file again at each run; instead one small job
per chunk digests its images (size, MD5, SHA-256 of each PNG and sidecar: the hashing runs in
parallel) and the sync job reads the chunk digests. A chunk is a page of the input sheet
(image_batch.common.pages: a context's images, 100 at a time, in sheet order), the page its
contact sheet shows: the digest job is the only job that takes the page's PNGs, and the contact
sheet takes the digest (one job after each image, not two: issue 19). A page's member file
(named by its content: image_batch.report.contact_sheet.member_files) is the digest's input when
it changed, so adding or removing a row reruns its page and the pages after it in its context
(and the sync).

A row inserted or removed early in a context moves the images of every later page of it: those
pages are digested again, but a PNG of the same size and time as at the last sync is not read
again (``known_digests``: what the sync kept of the digests, ``results/sync/known/<source>.json``:
size, modification and change time).

Digests live under ``results/sync/chunks/<source>/`` (the input sheet's folder, as its contact
sheets), so another sheet in the same folder never reads or replaces them. (Before, chunks were
prefixes of the SHA-1 of the image ids, under ``results/sync/chunks/`` itself: a run of this
version digests its pages once, and the sync finds every image already there.)
"""

import functools
import json
import os
import shutil
import threading
from pathlib import Path

from image_batch.common.fileio import atomic_write_bytes, canonical_json
from image_batch.descriptions.specs import IMAGES, image_files

DIGEST_ROOT = Path("results/sync/chunks")  # the digest_chunk rule's outputs
KNOWN_ROOT = Path("results/sync/known")  # what the last sync's digests said of each PNG


def assign(pages):
    """{chunk (page) name: [(folder, image_id), ...]} for ``pages`` (image_batch.common.pages.
    paginate's: the contact sheets' pages), in sheet order."""
    return {name: [(page.folder, image_id) for image_id in page.image_ids] for name, page in pages.items()}


def pages_data(chunks):
    """The bytes of the list of ``chunks``' names: the sync's input when it changed (a page gone
    is a digest the sync no longer reads)."""
    return canonical_json(list(chunks)).encode("utf-8")


def digest_path(source, chunk):
    """The digest of chunk ``chunk`` of input sheet ``source`` (image_batch.common.pages.source_slug)."""
    return DIGEST_ROOT / source / f"{chunk}.json"


def missing_behind(chunks, png_missing, source, images=IMAGES):
    """The PNGs missing (``png_missing``: the images planning found without their PNG) whose chunk
    was already digested: deleted (or never made) behind an up-to-date sync. Snakemake does not
    remake a missing intermediate file when what depends on it is up to date, so these become
    targets of the run (a computation: nothing is touched). (A sidecar deleted alone is no output
    of the image job: its marker, a target too, makes the job due: descriptions.specs.remake_marker.)"""
    missing = []
    if not png_missing:
        return missing
    for chunk, members in chunks.items():
        if not digest_path(source, chunk).exists():
            continue  # never digested: the chunk job is due anyway, and makes its images
        missing += [str(image_files(*member, images)[0]) for member in members if member in png_missing]
    return missing


def known_path(source):
    """Where the sync keeps what its digests said of each PNG of input sheet ``source``."""
    return KNOWN_ROOT / f"{source}.json"


def keep_digests(chunk_files, path):
    """The sync job: {name: [size, mtime_ns, ctime_ns, md5, sha256]} of every PNG its digests list,
    at ``path``, for the next run's digests (``known_digests``). Sidecars are small: read again."""
    known = {}
    for chunk_file in chunk_files:
        with open(chunk_file, encoding="utf-8") as handle:
            for entry in json.load(handle):
                if entry["name"].endswith(".png") and "ctime_ns" in entry:
                    stamp = [entry["size"], entry["mtime_ns"], entry["ctime_ns"]]
                    known[entry["name"]] = [*stamp, entry["md5"], entry["sha256"]]
    atomic_write_bytes(path, json.dumps(known, separators=(",", ":"), sort_keys=True).encode("utf-8"), durable=False)


_known_lock = threading.Lock()


def known_digests(path):
    """What the last sync kept (``keep_digests``), read once per process while the file stays the
    same (a run's digest jobs are threads of one process); {} when there is none or it cannot be
    read (the PNGs are then read again: slower, never wrong)."""
    try:
        info = os.stat(path)
    except OSError:
        return {}
    with _known_lock:
        return _read_known(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_known(path, size, mtime_ns):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: tuple(value) for name, value in data.items() if isinstance(value, list) and len(value) == 5}


def remove_earlier_layout(results="results"):
    """A real run (under the run lock): the files of the chunks before they were pages, which
    nothing reads any more: ``results/specs/_chunks/`` (member lists), the digests directly under
    ``results/sync/chunks/`` (a page's are in its sheet's folder) and their logs."""
    root = Path(results)
    shutil.rmtree(root / "specs" / "_chunks", ignore_errors=True)
    for folder, suffix in ((root / "sync" / "chunks", ".json"), (root / "logs" / "chunks", ".log")):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass
