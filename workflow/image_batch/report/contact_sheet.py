"""Contact sheets: per context, a grid of thumbnails captioned with their image ids, so the report
(and a person opening the file on its own) shows a context's images at a glance.

Whose.  Contact sheets belong to the input sheet they show: they live under
``results/contact-sheets/<source>/``, where ``<source>`` (image_batch.common.pages.source_slug) is the input sheet's
file name and a digest of its path (and worksheet), so two sheets that share a context name, and
with it a folder of ``results/images/``, never make or show each other's contact sheets.

Layout.  Thumbnails fit a 256 px box (aspect kept, centred on a neutral grey cell), up to 10 a
row, each captioned with its image id (long ids lose their middle to an ellipsis, so the common
prefix and the distinguishing end both stay).  A title names the context and its image count.
A context of more than ``pages.PAGE_SIZE`` (100) images gets one sheet per 100, in sheet order:
``<folder>.jpg``, ``<folder>_page2.jpg``, ... (``_`` never occurs in a folder name, so a page can
never be mistaken for another context's sheet: ``nature-2`` is a folder, ``nature_page2`` a page).
A full sheet is 2,752 x 3,036 px: as JPEG (quality 85) 1.5 to 2.6 MB for photographs, as PNG 10 to
13 MB and 10 to 30 times slower to encode; at 256 px JPEG's artefacts do not show.  Output is
deterministic: the same images, ids and title give the same bytes (with the same Pillow).

Cache.  A thumbnail from a 1024 px PNG costs ~30 ms (nearly all of it the PNG decode); one from
the cache ~1 ms.  Each image's thumbnail is kept under ``CACHE_ROOT`` named by the SHA-256 of the
PNG's bytes, and each sheet keeps an index (PNG path -> size, mtime, SHA-256).  A PNG whose size
and mtime match its index entry is not even read; one whose size or mtime changed is hashed, and
decoded only when that content has no thumbnail yet.  So a rerun after one image changed decodes
that one image, and an image moving to another page (a row inserted above it) is not decoded
again.  Sheets are always composed from the cached (JPEG) thumbnails, so a sheet built from a cold
cache and one built from a warm cache are byte-identical.  The cache is ~20-30 KB an image; delete
``results/contact-sheets/.thumbnails`` at any time.  Jobs without a shared filesystem start with
an empty cache (correct, only slower: ~3 s a sheet of 100).
"""

import hashlib
import io
import json
import math
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from image_batch.common import addressed
from image_batch.common.fileio import atomic_write_bytes, canonical_json

SHEET_ROOT = Path("results/contact-sheets")
MEMBERS_ROOT = Path("results/specs/_contact-sheets")  # plan files: staged into storage like the specs
COLUMNS = 10
THUMB = 256  # the box a thumbnail fits in, px
GAP = 16
MARGIN = 24
CAPTION_HEIGHT = 24
CAPTION_SIZE = 14
TITLE_HEIGHT = 44
TITLE_SIZE = 22
BACKGROUND = (32, 32, 32)
CELL = (58, 58, 58)  # behind each thumbnail: letterbox bars and transparent pixels
CAPTION_COLOUR = (224, 224, 224)
TITLE_COLOUR = (255, 255, 255)
SHEET_QUALITY = 85
THUMB_QUALITY = 90
ELLIPSIS = "\u2026"
# What a cached thumbnail depends on besides its PNG (bump v1 when make_thumbnail changes): a
# thumbnail of another recipe is never read.
RECIPE = f"v1-t{THUMB}-q{THUMB_QUALITY}-c{bytes(CELL).hex()}"
CACHE_ROOT = SHEET_ROOT / ".thumbnails" / RECIPE
SUFFIX = ".jpg"


# --- which sheets there are -------------------------------------------------------------------


def sheet_path(name, source):
    return SHEET_ROOT / source / f"{name}{SUFFIX}"


def sheet_pngs(sheets, name):
    """The PNGs of contact sheet ``name``, in sheet order (the contact_sheet rule's input)."""
    page = sheets.get(name)
    if page is None:
        raise KeyError(f"no contact sheet {name!r} in this sheet's plan")
    return [f"results/images/{page.folder}/{image_id}.png" for image_id in page.image_ids]


def members(page, context):
    """What a sheet shows besides the PNGs' pixels.  Written as the sheet's member file (an input
    of its page's chunk digest, which the sheet takes), so a change of title, page or membership
    makes exactly that page's digest and sheet due again, also under --rerun-triggers mtime."""
    return {
        "context": context,
        "folder": page.folder,
        "page": page.page,
        "pages": page.pages,
        "first": page.first,
        "total": page.total,
        "image_ids": list(page.image_ids),
    }


def contexts(specs):
    """{folder: context as written in the sheet} (every row of a folder has the same context: the
    sheet check refuses two contexts sharing a folder)."""
    found = {}
    for spec in specs:
        found.setdefault(spec["folder"], spec["context"])
    return found


@dataclass
class MemberFiles:
    files: addressed.Files  # what a real run writes (write_plan_file)
    paths: dict  # sheet name -> its member file


def member_files(sheets, contexts, source, consumer, root=MEMBERS_ROOT, scanned=True):
    """Each sheet's member file, named by its content (nothing is written here): stem
    ``<source>_<sheet name>`` (a source slug has no ``_``), so a run of another input sheet, which
    replaces its own member files, never deletes this one's. ``consumer(name)``: the output of the
    one job that takes it, the page's chunk digest (image_batch.sync.chunks), which the sheet
    takes: the digest takes the file when it is missing or newer than the digest, and writes it
    itself when the digest was not made yet (image_batch.common.addressed)."""
    files = addressed.Files(root, scanned=scanned)
    paths = {}
    for name, page in sheets.items():
        data = canonical_json(members(page, contexts.get(page.folder, page.folder))).encode("utf-8")
        paths[name] = files.add(f"{source}_{name}", data, consumer(name))
    return MemberFiles(files, paths)


def title(info):
    count = info["total"]
    text = f"{info['context']}  \u00b7  {count:,} image{'' if count == 1 else 's'}"
    if info["pages"] > 1:
        last = info["first"] + len(info["image_ids"]) - 1
        text += f"  \u00b7  page {info['page']} of {info['pages']}, images {info['first']:,}-{last:,}"
    return text


# --- drawing ------------------------------------------------------------------------------------


def font(size):
    """Pillow's bundled font (Aileron): the same glyphs on every machine, so the same sheet.  Loaded
    per sheet (70 us): jobs run as threads, and one FreeType face must not be shared between them."""
    return ImageFont.load_default(size=size)


def drawable(text):
    """``text`` in the characters the bundled font has (printable ASCII, the ellipsis and the middle
    dot): accents are dropped (``Crème`` -> ``Creme``), anything else becomes ``?``.  Image ids are
    ASCII already; this only touches context names in titles."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            continue
        out.append(char if " " <= char <= "~" or char in (ELLIPSIS, "\u00b7") else "?")
    return "".join(out)


def fit_middle(text, face, width):
    """``text`` shortened in the middle (``product-shot-…-0042-front``) to fit ``width`` px."""
    if face.getlength(text) <= width:
        return text
    low, high = 0, len(text) - 1  # how many characters of ``text`` to keep
    while low < high:
        keep = (low + high + 1) // 2
        head = (keep + 1) // 2
        candidate = text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]
        if face.getlength(candidate) <= width:
            low = keep
        else:
            high = keep - 1
    head = (low + 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (low - head) :]


def fit_end(text, face, width):
    """``text`` shortened at its end to fit ``width`` px."""
    if face.getlength(text) <= width:
        return text
    low, high = 0, len(text) - 1
    while low < high:
        keep = (low + high + 1) // 2
        if face.getlength(text[:keep] + ELLIPSIS) <= width:
            low = keep
        else:
            high = keep - 1
    return text[:low] + ELLIPSIS


def grid(count):
    """(columns, rows) of a sheet of ``count`` thumbnails."""
    columns = max(1, min(COLUMNS, count))
    return columns, max(1, math.ceil(count / columns))


def cell_origin(index, columns):
    """Top-left corner of thumbnail box ``index`` (0-based)."""
    row, column = divmod(index, columns)
    return MARGIN + column * (THUMB + GAP), MARGIN + TITLE_HEIGHT + row * (THUMB + CAPTION_HEIGHT + GAP)


def render(heading, tiles):
    """The sheet as an RGB image: ``heading`` above a grid of ``tiles`` [(caption, thumbnail)]."""
    columns, rows = grid(len(tiles))
    title_face, caption_face = font(TITLE_SIZE), font(CAPTION_SIZE)
    heading = drawable(heading)
    widest = COLUMNS * THUMB + (COLUMNS - 1) * GAP
    inner = max(columns * THUMB + (columns - 1) * GAP, min(math.ceil(title_face.getlength(heading)), widest))
    height = 2 * MARGIN + TITLE_HEIGHT + rows * (THUMB + CAPTION_HEIGHT) + (rows - 1) * GAP
    sheet = Image.new("RGB", (inner + 2 * MARGIN, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((MARGIN, MARGIN), fit_end(heading, title_face, inner), font=title_face, fill=TITLE_COLOUR, anchor="la")
    for index, (caption, thumb) in enumerate(tiles):
        x, y = cell_origin(index, columns)
        draw.rectangle((x, y, x + THUMB - 1, y + THUMB - 1), fill=CELL)
        sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        text = fit_middle(drawable(caption), caption_face, THUMB - 8)
        draw.text((x + THUMB // 2, y + THUMB + 5), text, font=caption_face, fill=CAPTION_COLOUR, anchor="ma")
    return sheet


def encode_jpeg(image, quality):
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


# --- thumbnails and their cache -----------------------------------------------------------------


def make_thumbnail(png_path):
    """Decode ``png_path`` and shrink it into the THUMB box, flattened onto the cell colour.
    The one expensive step (the full decode): counted by the cache, patched by tests."""
    with Image.open(png_path) as image:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the high byte
            image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        # reducing_gap=1: shrink by the largest whole factor with a box filter first (4x for 1024 px),
        # then Lanczos for the rest: 2 ms instead of 13 ms at 1024 px, no visible difference at 256 px
        image.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS, reducing_gap=1.0)
    if has_alpha:
        flat = Image.new("RGB", image.size, CELL)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    return image


def sha256_file(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Stats:
    decoded: int = 0  # PNGs decoded (no thumbnail of their content yet)
    hashed: int = 0  # PNGs read and hashed (size or mtime differed from the index)
    reused: int = 0  # thumbnails taken from the cache without reading the PNG
    dropped: list = field(default_factory=list)  # thumbnails of content an image no longer has

    def describe(self):
        return f"{self.decoded} decoded, {self.hashed} hashed, {self.reused} unchanged"


class ThumbnailCache:
    """Thumbnails of one sheet's images: content-addressed files shared by every sheet of a folder
    (so an image moving to the next page is not decoded again), and this sheet's own index (so
    concurrent jobs of one folder never write the same index)."""

    def __init__(self, folder, sheet, root=None, source=""):
        self.dir = Path(root or CACHE_ROOT) / folder
        # the index is this contact sheet's: of its input sheet (source) and page
        self.index_path = self.dir / source / f"{sheet}.index.json"
        self.stats = Stats()
        try:
            self.old = json.loads(self.index_path.read_text("utf-8"))
        except (OSError, ValueError):
            self.old = {}
        if not isinstance(self.old, dict):
            self.old = {}
        self.new = {}

    def thumb_path(self, digest):
        return self.dir / f"{digest}{SUFFIX}"

    def thumbnail(self, png_path):
        """The cached thumbnail of ``png_path`` as JPEG bytes, made when its content has none."""
        key = str(png_path)
        st = os.stat(png_path)
        entry = self.old.get(key)
        digest = None
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]:
            digest = entry[2]
            data = self._read(digest)
            if data is not None:
                self.stats.reused += 1
                self.new[key] = entry
                return data
        digest = sha256_file(png_path)
        self.stats.hashed += 1
        data = self._read(digest)
        if data is None:
            data = encode_jpeg(make_thumbnail(png_path), THUMB_QUALITY)
            self.stats.decoded += 1
            atomic_write_bytes(self.thumb_path(digest), data, durable=False)
        self.new[key] = [st.st_size, st.st_mtime_ns, digest]
        if isinstance(entry, list) and len(entry) == 3 and entry[2] != digest:
            self.stats.dropped.append(entry[2])  # this image's old content
        return data

    def _read(self, digest):
        try:
            return self.thumb_path(digest).read_bytes()
        except OSError:
            return None

    def save(self):
        """Write this sheet's index; delete the thumbnails of content its images replaced (another
        image with the very same content would only be decoded once more)."""
        atomic_write_bytes(self.index_path, canonical_json(self.new).encode("utf-8"), durable=False)
        keep = {entry[2] for entry in self.new.values()}
        for digest in self.stats.dropped:
            if digest not in keep:
                try:
                    self.thumb_path(digest).unlink()
                except OSError:
                    pass


def build(info, png_paths, output, cache_root=None):
    """Make the sheet ``output`` for member info ``info`` (see :func:`members`) from ``png_paths``
    (in sheet order; each image's id is its file name).  Returns the cache's :class:`Stats`."""
    sheet = Path(output).name.removesuffix(SUFFIX)
    cache = ThumbnailCache(info["folder"], sheet, cache_root, source=Path(output).parent.name)
    tiles = []
    for png in png_paths:
        with Image.open(io.BytesIO(cache.thumbnail(png))) as thumb:
            thumb.load()
            tiles.append((Path(png).stem, thumb))
    data = encode_jpeg(render(title(info), tiles), SHEET_QUALITY)
    atomic_write_bytes(output, data, durable=False)
    cache.save()
    return cache.stats


def build_job(members_file, png_paths, output, log):
    """The contact_sheet rule's job."""
    from image_batch.common.joblog import JobLog

    info = json.loads(Path(members_file).read_text("utf-8"))
    with JobLog(log) as say:
        ids = [Path(png).stem for png in png_paths]
        if ids != info["image_ids"]:  # the plan changed under a running job: show what it was given
            say(f"note: member file lists {len(info['image_ids'])} images, the job was given {len(ids)}")
        stats = build(info, png_paths, output)
        say(f"{output}: {len(ids)} images ({stats.describe()})")
