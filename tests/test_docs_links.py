"""The documentation's relative links lead somewhere, and the README's set-up commands are CI's.

Sections move between README.md and docs/ (the README's first screen is for a newcomer, the
reference further down or in docs/), and other files link to the README's sections by anchor:
a moved or renamed section must not leave a link pointing at nothing.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    ROOT / "config" / "README.md",
    ROOT / "tests" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text):
    """The text with code blocks and code spans taken out: links there are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text):
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to -,
    a repeated heading numbered (-1, -2, ...)."""
    seen = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path):
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        yield target


def broken_links(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.is_dir() or anchor not in anchors(dest.read_text(encoding="utf-8"))):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert list(relative_links(path)), f"{path} has no relative link: the checker reads nothing"
    assert broken_links(path) == []


def test_docs_folder_is_linked_from_the_readme():
    readme = set(relative_links(ROOT / "README.md"))
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert any(t.partition("#")[0] == f"docs/{doc.name}" for t in readme), doc.name


def test_anchor_rules():
    text = "# Image.Batch\n## S3 layout and markers\n## Set up\n```\n# not a heading\n```\n## Set up\n"
    assert anchors(text) == {"imagebatch", "s3-layout-and-markers", "set-up", "set-up-1"}


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", setup, re.S) for line in block.splitlines()]
    assert commands == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install --require-hashes -r requirements.lock"
        " && snakemake --cores 8",
        "python3 -m venv .venv && . .venv/bin/activate && pip install --require-hashes -r requirements-dev.lock"
        " && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "python -m pytest" in ci
