"""What the HTML report (``snakemake --report report.html``) shows with each image: its context,
id and prompt, read from the image's spec (so the report needs no per-image parameters)."""

import json
from functools import lru_cache


@lru_cache(maxsize=4096)
def _read(path):
    """A request file or a contact sheet's member file (read once per report)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


_spec = _members = _read


def context(wildcards, input):
    """The report subcategory: the context as written in the sheet."""
    return _spec(str(input.spec))["context"]


def labels(wildcards, input):
    """The columns of the report's table of images."""
    spec = _spec(str(input.spec))
    return {"context": spec["context"], "image id": spec["image_id"], "prompt": spec["request"]["prompt"]}


# The contact sheets (report/contact_sheet.py) sit in the same category and subcategory as their
# context's images, with the same label columns.  The report's table sorts a subcategory's rows by
# their label values, column by column (JavaScript localeCompare, so by the reader's locale): the
# context is the same on every row, and a sheet's image id is empty, which every collation puts
# before any non-empty id.  So the sheets are the first rows under their context, in page order
# (the page numbers are zero-padded), and the images follow as before.


def sheet_context(wildcards, input):
    """A contact sheet's report subcategory: its context, like its images'."""
    return _members(str(input.members))["context"]


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
    info = _members(str(input.members))
    return {"context": info["context"], "image id": "", "prompt": sheet_description(info)}
