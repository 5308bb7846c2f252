"""What the HTML report (``snakemake --report report.html``) shows with each image: its context,
id and prompt, read from the image's spec (so the report needs no per-image parameters)."""

import base64
import html
import io
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote


@lru_cache(maxsize=4096)
def _read(path):
    """A request file or a contact sheet's member file (read once per report)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


_spec = _members = _read

# The plan's spec_of(folder, image_id) (set by the Snakefile: use_plan): an image job without an
# input (an up-to-date image, or one not made yet: see image_batch.plan.Plan.request_of) has the
# same spec in the plan as in its request file.
_plan_spec = None


# {sheet name: its member file} (set by the Snakefile: use_sheet_members): a contact sheet's job
# takes its member file only when it changed (see image_batch.common.addressed).
_sheet_members = {}


def use_plan(spec_of):
    global _plan_spec
    _plan_spec = spec_of


def use_sheet_members(paths):
    global _sheet_members
    _sheet_members = paths


def _sheet_info(wildcards, input):
    path = getattr(input, "members", None) or _sheet_members[wildcards.sheet]
    return _members(str(path))


def _image_spec(wildcards, input):
    path = getattr(input, "spec", None)
    if path:
        try:
            return _spec(str(path))
        except FileNotFoundError:  # named for settings no run has used yet (a report after a change)
            pass
    return _plan_spec(wildcards.folder, wildcards.image_id)


def context(wildcards, input):
    """The report subcategory: the context as written in the sheet."""
    return _image_spec(wildcards, input)["context"]


def labels(wildcards, input):
    """The columns of the report's table of images."""
    spec = _image_spec(wildcards, input)
    return {"context": spec["context"], "image id": spec["image_id"], "prompt": spec["request"]["prompt"]}


# The contact sheets (report/contact_sheet.py) sit in the same category and subcategory as their
# context's images, with the same label columns.  The report's table sorts a subcategory's rows by
# their label values, column by column (JavaScript localeCompare, so by the reader's locale): the
# context is the same on every row, and a sheet's image id is empty, which every collation puts
# before any non-empty id.  So the sheets are the first rows under their context, in page order
# (the page numbers are zero-padded), and the images follow as before.


def sheet_context(wildcards, input):
    """A contact sheet's report subcategory: its context, like its images'."""
    return _sheet_info(wildcards, input)["context"]


def sheet_description(info):
    """What the report's prompt column says of a contact sheet."""
    count = f"{info['total']:,} image{'' if info['total'] == 1 else 's'}"
    if info["pages"] == 1:
        return f"Contact sheet: all {count} at a glance"
    width = len(str(info["pages"]))
    last = info["first"] + len(info["image_ids"]) - 1
    return f"Contact sheet {info['page']:0{width}d} of {info['pages']}: images {info['first']:,}-{last:,} of {count}"


def sheet_labels(wildcards, input):
    """A contact sheet's row in the table: same columns as an image's, an empty image id first."""
    info = _sheet_info(wildcards, input)
    return {"context": info["context"], "image id": "", "prompt": sheet_description(info)}


# --- the report's front page ----------------------------------------------------------------------
# Snakemake's report opens on the workflow description (workflow/report/workflow.rst, a Jinja
# template rendered with the report's ``files``) beside the job graph.  That description shows the
# contact sheets: each as a small preview (a data URI, so the same in a .html and a .zip report;
# the full sheet is embedded once already, as a result) that opens the full sheet in the report.
# The report run passes :func:`landing` to the template (config key LANDING_KEY); the preview is
# made in memory (nothing is written under results/).

LANDING_KEY = "_report_landing"
PREVIEW_WIDTH = 1024  # px: shown at the description's ~500 px, sharp on a high-density screen
PREVIEW_QUALITY = 80
LINE = 4000  # characters of base64 a line
PREVIEWS = 24  # at most this many on the front page (first pages first); the rest as links


def is_contact_sheet(record):
    from image_batch.report.contact_sheet import SHEET_ROOT

    return Path(record.path).parent.parent == SHEET_ROOT


def preview_uri(path, width=PREVIEW_WIDTH):
    """A JPEG data URI of the contact sheet at ``path``, shrunk to ``width`` px (never enlarged)."""
    from PIL import Image

    with Image.open(path) as sheet:
        height = max(1, round(sheet.height * width / sheet.width))
        if sheet.width > width:
            sheet.draft("RGB", (width, height))  # JPEG: decode at a fraction of the size
            image = sheet.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        else:
            image = sheet.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=PREVIEW_QUALITY, optimize=True)
    data = base64.b64encode(out.getvalue()).decode("ascii")
    # in lines: docutils refuses a line of more than 10,000 characters, and a browser drops the
    # line breaks of a URL (and base64 ignores them)
    return "data:image/jpeg;base64," + "\n".join(data[i : i + LINE] for i in range(0, len(data), LINE))


def open_in_report(path):
    """A link that opens ``path``'s entry in the report (as Snakemake's own rst links do)."""
    return f"javascript:app.showResultInfo('{quote(str(path), safe='/')}')"


def landing(files, limit=PREVIEWS):
    """The front page's gallery (HTML) for the report's ``files`` (Snakemake's FileRecords): every
    contact sheet of this report, first pages first, each a preview linking to the full sheet."""
    sheets = [record for record in files if is_contact_sheet(record)]
    if not sheets:
        return ""
    ordered = sorted(sheets, key=lambda record: ("_page" in Path(record.path).stem, str(record.path)))
    shown, rest = ordered[:limit], ordered[limit:]
    # Snakemake centres its content pane vertically (flex, items-center): a front page taller than
    # the window (a long job graph beside it is enough) loses its top, out of reach of the scroll
    # bar. This style (a <style> in the page's HTML applies, as a script would not run) starts the
    # pane at its top; and the gallery scrolls in a box of its own, below the line that opens it.
    parts = [
        "<style>div.h-screen.overflow-auto.items-center.justify-center { align-items: flex-start; }</style>",
        '<div class="image-batch-gallery" style="max-height:calc(100vh - 9rem);overflow-y:auto">',
    ]
    for record in sorted(shown, key=lambda record: str(record.path)):
        path = str(record.path)
        labels = record.labels if isinstance(record.labels, dict) else {}
        label = labels.get("prompt") or Path(path).stem
        parts.append(
            f'<figure class="image-batch-sheet" style="margin:0 0 1em 0">'
            f'<a href="{html.escape(open_in_report(path))}" title="{html.escape(path)}">'
            f'<img src="{preview_uri(path)}" alt="contact sheet {html.escape(path)}" '
            f'style="max-width:100%;height:auto;margin:0"></a>'
            f"<figcaption><strong>{html.escape(labels.get('context', ''))}</strong> {html.escape(label)}"
            f"</figcaption></figure>"
        )
    if rest:
        links = ", ".join(
            f'<a href="{html.escape(open_in_report(r.path))}">{html.escape(str(r.path))}</a>' for r in rest
        )
        parts.append(f"<p>{len(rest)} more contact sheets under Images: {links}</p>")
    parts.append("</div>")
    return "\n".join(parts)
