"""Small file helpers: atomic writes and content hashes."""

import hashlib
import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes, durable=True) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new file:
    write a temporary file in the same folder, fsync it (unless ``durable`` is False: files derived
    again on every run need not survive a power cut), then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _writer_alive(name):
    """Whether the process that owns temporary file ``name`` (``.<file>.<pid>.<random>.part``) lives."""
    try:
        pid = int(name.rsplit(".", 3)[-3])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(root, only_dead_writers=True):
    """Delete temporary files left by writers that died (``kill -9``, a crash) under ``root``.
    With ``only_dead_writers=False`` every one goes (the caller knows no writer is alive)."""
    removed = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(".part"):
                if only_dead_writers and _writer_alive(name):
                    continue
                Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


def canonical_json(obj) -> str:
    """Stable JSON text (sorted keys) so equal content gives equal bytes."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, canonical_json(obj).encode("utf-8"))


def write_if_changed(path, data: bytes, durable=False) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly these bytes.
    Returns True when the file was (re)written.  Unchanged files keep their mtime, which is what
    lets Snakemake rebuild only the images whose request changed.  Used for files derived again on
    every run, so not fsynced unless ``durable``."""
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data, durable)
    return True


def file_digests(path, chunk=1 << 20):
    """(size, md5 hex, sha256 hex) of a file, read once."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            size += len(block)
            md5.update(block)
            sha.update(block)
    return size, md5.hexdigest(), sha.hexdigest()
