"""The previous version of the workflow (commit a54f1d4, 2026-11-24), kept in the repository as
``tests/data/previous-version-a54f1d4.tar.gz`` so the upgrade tests run on every clone, shallow ones
too, and never skip.  It holds only what a run needs; made with

    git archive --format=tar.gz -9 -o tests/data/previous-version-a54f1d4.tar.gz a54f1d4 \\
        Snakefile workflow config main.py profiles
"""

import tarfile
from pathlib import Path

COMMIT = "a54f1d4"
ARCHIVE = Path(__file__).resolve().parents[1] / "data" / f"previous-version-{COMMIT}.tar.gz"


def extract(target):
    """The previous version's files in ``target`` (made if needed); returns ``target``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(target, filter="tar")
    for name in ("Snakefile", "main.py", "workflow", "config", "profiles"):
        if not (target / name).exists() and not (target / name).is_symlink():
            raise AssertionError(f"{ARCHIVE} has no {name}")
    return target
