"""Group images into chunks for the sync stage.

Snakemake checks a job's inputs against its dependencies in O(inputs x dependencies), so one sync
job over all N images costs O(N^2) before it even starts (minutes at 100,000 images). Instead,
one small job per chunk digests its images (size, MD5, SHA-256: the hashing runs in parallel) and
the sync job reads the chunk digests. Chunks are stable: an image's chunk is a prefix of the
SHA-1 of its id, with as many hex digits as keep chunks near 100 images or fewer, and each
chunk's member list is a file named by its content (``<chunk>.<digest16>.json``, written by a real
run when missing), so adding or removing a row reruns only its own chunk (and the sync).
"""

import hashlib
import math
from pathlib import Path

from image_batch.common.fileio import canonical_json
from image_batch.descriptions.specs import IMAGES, image_files

MEMBERS_ROOT = Path("results/specs/_chunks")
DIGEST_ROOT = Path("results/sync/chunks")  # the digest_chunk rule's outputs
TARGET_SIZE = 100


def digits_for(count):
    """Hex digits of the chunk prefix for ``count`` images (0 means a single chunk, 'all')."""
    if count <= TARGET_SIZE:
        return 0
    return math.ceil(math.log(count / TARGET_SIZE, 16))


def chunk_of(image_id, digits):
    return hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:digits] if digits else "all"


def assign(images):
    """{chunk id: [(folder, image_id), ...]} for ``images`` [(folder, image_id)], in input order."""
    digits = digits_for(len(images))
    chunks = {}
    for folder, image_id in images:
        chunks.setdefault(chunk_of(image_id, digits), []).append((folder, image_id))
    return chunks


def members_data(members):
    """The bytes of a chunk's member list."""
    return canonical_json(sorted(f"{folder}/{image_id}" for folder, image_id in members)).encode("utf-8")


def missing_behind(chunks, png_missing, images=IMAGES):
    """The PNGs missing (``png_missing``: the images planning found without their PNG) whose chunk
    was already digested: deleted (or never made) behind an up-to-date sync. Snakemake does not
    remake a missing intermediate file when what depends on it is up to date, so these become
    targets of the run (a computation: nothing is touched). (A sidecar deleted alone is no output
    of the image job: its marker, a target too, makes the job due: descriptions.specs.remake_marker.)"""
    missing = []
    if not png_missing:
        return missing
    for chunk, members in chunks.items():
        if not (DIGEST_ROOT / f"{chunk}.json").exists():
            continue  # never digested: the chunk job is due anyway, and makes its images
        missing += [str(image_files(*member, images)[0]) for member in members if member in png_missing]
    return missing
