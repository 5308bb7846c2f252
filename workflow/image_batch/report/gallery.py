"""What the HTML report (``snakemake --report report.html``) shows with each image: its context,
id and prompt, read from the image's spec (so the report needs no per-image parameters)."""

import json
from functools import lru_cache


@lru_cache(maxsize=4096)
def _spec(spec_file):
    with open(spec_file, encoding="utf-8") as handle:
        return json.load(handle)


def context(wildcards, input):
    """The report subcategory: the context as written in the sheet."""
    return _spec(str(input.spec))["context"]


def labels(wildcards, input):
    """The columns of the report's table of images."""
    spec = _spec(str(input.spec))
    return {"context": spec["context"], "image id": spec["image_id"], "prompt": spec["request"]["prompt"]}
