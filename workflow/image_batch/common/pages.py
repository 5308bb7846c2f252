"""Pages: an input sheet's images, per context, in pages of up to ``PAGE_SIZE`` (100) in sheet
order. One page is one contact sheet (image_batch.report.contact_sheet) and one sync chunk
(image_batch.sync.chunks): the job that digests a page's images for the sync is the one job that
takes their PNGs, and the page's contact sheet takes its digest. So each image has one job after
it, as in bare Snakemake, not one per feature (issue 19: at 100,000 images each such job over
every PNG cost Snakemake about a seventh of its own work).

A page is named ``<folder>`` (the first) or ``<folder>_page<n>``, and belongs to its input sheet:
``source_slug`` names the folder of the sheet's contact sheets and chunk digests, so two input
sheets sharing a context name never make or read each other's.
"""

import hashlib
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = 100


@dataclass(frozen=True)
class Page:
    folder: str
    page: int  # 1-based
    pages: int
    first: int  # 1-based position of the first image of this page in its context
    total: int  # images in the context
    image_ids: tuple

    @property
    def name(self):
        return sheet_name(self.folder, self.page)


def sheet_name(folder, page):
    return folder if page == 1 else f"{folder}_page{page}"


def source_slug(input_csv, input_sheet=None):
    """The folder of an input sheet's contact sheets: ``<stem>-<digest>`` (``images-1a2b3c4d``), the
    stem of its file name (lower case, runs of anything but letters and digits as one ``-``) and 8
    hex digits of SHA-256 of its path as configured (normalised) and its worksheet.  So two
    ``images.csv`` in different folders, or two worksheets of one workbook, differ.  The path as
    configured, not resolved: a job process elsewhere (storage, no shared file system) resolves it
    elsewhere but must name the same output (as the sync's sheet record is named)."""
    plain = unicodedata.normalize("NFKD", Path(input_csv).stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    key = f"{os.path.normpath(input_csv)}\0{input_sheet or ''}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return f"{stem[:40].strip('-') or 'sheet'}-{digest}"


def paginate(images, page_size=PAGE_SIZE):
    """{sheet name: Page} for ``images`` [(folder, image_id)] in sheet order: contexts in order of
    first appearance, each split into pages of ``page_size`` images."""
    by_folder = {}
    for folder, image_id in images:
        by_folder.setdefault(folder, []).append(image_id)
    sheets = {}
    for folder, ids in by_folder.items():
        pages = math.ceil(len(ids) / page_size)
        for index in range(pages):
            start = index * page_size
            page = Page(folder, index + 1, pages, start + 1, len(ids), tuple(ids[start : start + page_size]))
            sheets[page.name] = page
    return sheets
