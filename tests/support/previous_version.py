"""Earlier versions of the workflow, kept in the repository as ``tests/data/previous-version-<commit>.tar.gz``
so the upgrade tests run on every clone, shallow ones too, and never skip: a54f1d4 (2026-11-24, the
release before request files carried their endpoint) and 55c9162 (2026-12-04, the last whose request
files were named ``<image_id>.json``). Each holds only what a run needs; made with

    git archive --format=tar.gz -9 -o tests/data/previous-version-<commit>.tar.gz <commit> \\
        Snakefile workflow config main.py profiles
"""

import tarfile
from pathlib import Path

COMMIT = "a54f1d4"
DATA = Path(__file__).resolve().parents[1] / "data"
ARCHIVE = DATA / f"previous-version-{COMMIT}.tar.gz"


# The previous version ran with its own locked packages; it runs here with today's. Its one line
# that today's packages refuse: tenacity 9.1 (pinned since google-genai needs tenacity < 9.2) names
# the first backoff `initial`, which 9.2 also called `multiplier`. Same meaning, same waits.
COMPATIBILITY = {
    "a54f1d4": {
        "workflow/image_batch/generate.py": [
            ("wait_exponential_jitter(multiplier=initial,", "wait_exponential_jitter(initial=initial,")
        ],
    },
    "55c9162": {
        "workflow/image_batch/images/generate.py": [("multiplier=retry.initial_wait,", "initial=retry.initial_wait,")],
    },
}


def extract(target, commit=COMMIT):
    """The files of the version ``commit`` in ``target`` (made if needed), with :data:`COMPATIBILITY`
    applied; returns ``target``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    archive_path = DATA / f"previous-version-{commit}.tar.gz"
    with tarfile.open(archive_path) as archive:
        archive.extractall(target, filter="tar")
    for name in ("Snakefile", "main.py", "workflow", "config", "profiles"):
        if not (target / name).exists() and not (target / name).is_symlink():
            raise AssertionError(f"{archive_path} has no {name}")
    for name, changes in COMPATIBILITY[commit].items():
        path = target / name
        text = path.read_text(encoding="utf-8")
        for old, new in changes:
            if old not in text:
                raise AssertionError(f"{path}: the compatibility change {old!r} no longer applies")
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return target
