"""Small file helpers: atomic writes that honour the umask, JSON reads with clear errors, content hashes."""

import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

# Temp names carry host and pid, so a later run can tell a dead writer's leftovers from a live one's.
HOST = socket.gethostname().replace(".", "-") or "host"


def _read_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files made for the user get the mode any program's new files get (0666 less the umask), not
# mkstemp's private 0600: in a container run as root, the host user must be able to open them.
UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK


def atomic_write_bytes(path, data: bytes, durable=True, private=False) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new file:
    write a temporary file in the same folder, fsync it (unless ``durable`` is False: files derived
    again on every run need not survive a power cut), then rename it into place. The file gets the
    umask's mode, or 0600 when ``private`` (the response store)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        if not private:
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a write that failed (a full disk) names the file it was for
        raise


def _process(pid):
    """The state letter and start time (seconds since the epoch) of process ``pid``, or
    (None, None) where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        fields = data[data.rindex(b")") + 2 :].split()  # after the name, which may hold spaces
        state, ticks = fields[0].decode(), int(fields[19])  # fields 3 and 22
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
        return state, boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None, None


def _writer_alive(name, path=None):
    """Whether the writer of temp file ``name`` (``.<file>.<host>.<pid>.<random>.part``) may be
    alive: True, False, or None when it ran on another host or container (its pid means nothing here).
    A zombie is dead: a killed worker whose parent died too stays one for good where the container's
    first process does not reap orphans. With ``path``, a process that has the pid but started after
    the file was last written is not its writer (the pid was used again: a busy machine goes through
    32,768 of them quickly)."""
    try:
        host, pid = name.rsplit(".", 4)[-4:-2]
        if host != HOST:
            return None
        os.kill(int(pid), 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    state, started = _process(int(pid))
    if state in ("Z", "X"):
        return False
    if path is not None and started is not None:
        try:
            if started > os.stat(path).st_mtime + 2:
                return False
        except FileNotFoundError:
            return False
    return True


def remove_stale_parts(root, only_dead_writers=True, min_age=0):
    """Delete temporary files left by writers that died (``kill -9``, a crash) under ``root``.
    With ``only_dead_writers=False`` every one goes (the caller knows no writer is alive).
    ``min_age`` (seconds) spares recent files written on another host or container, whose writer's
    pid cannot be checked from here."""
    import time

    removed = 0
    now = time.time()
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(".part"):
                path = Path(dirpath, name)
                alive = _writer_alive(name, path) if only_dead_writers else False
                if alive:
                    continue
                try:
                    if alive is None and now - path.stat().st_mtime < min_age:
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
    return removed


def read_json(path, what):
    """The JSON in ``path`` (``what`` it is, for the message); a clear UserError when it is missing,
    unreadable or not JSON: never a traceback."""
    from image_batch.common.errors import UserError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} is missing; run again to make it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: {what} cannot be read ({exc}); delete it and run again") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc}); delete it and run again") from None


def canonical_json(obj) -> str:
    """Stable JSON text (sorted keys) so equal content gives equal bytes: exactly
    ``json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"``, the bytes that name
    request files and that sidecars' ``request_sha256`` hash (a contract with every ``results/``
    made before). json.dumps encodes an indented document in pure Python; this builds the same
    text with its C string encoder, about three times faster (a request file per image at every
    start: issue 19), and leaves what it does not know (a key that is no string: the C encoder
    refuses it) to json.dumps."""
    try:
        return _indented(obj, "\n") + "\n"
    except TypeError:  # a key that is no string (json.dumps converts, or refuses, it), or no JSON at all
        return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


_encode_string = json.encoder.encode_basestring  # ensure_ascii=False's (C)


def _indented(value, newline):
    """``value`` as json.dumps(indent=2, sort_keys=True, ensure_ascii=False) writes it, ``newline``
    being the line break and indent of its own level."""
    if isinstance(value, str):
        return _encode_string(value)
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [inner + _encode_string(key) + ": " + _indented(value[key], inner) for key in sorted(value)]
        return "{" + ",".join(items) + newline + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        return "[" + ",".join([inner + _indented(item, inner) for item in value]) + newline + "]"
    return json.dumps(value)  # a number, true, false, null (or json.dumps's own error)


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


def unwritable(root, files_skipped_under=()):
    """The first folder or file under ``root`` (itself included) the user running the workflow cannot
    write, or None (also when ``root`` does not exist yet). Files under the folders
    ``files_skipped_under`` (relative to ``root``: one file per image, thousands) are not looked at,
    their folders are. Looks only (one access() per entry)."""
    for dirpath, _, names in os.walk(root):
        if not os.access(dirpath, os.W_OK | os.X_OK):
            return dirpath
        inside = os.path.relpath(dirpath, root).replace(os.sep, "/")
        if any(inside == skip or inside.startswith(f"{skip}/") for skip in files_skipped_under):
            continue
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.access(path, os.W_OK) and not os.path.islink(path):
                return path
    return None


def unwritable_file(paths):
    """The first of ``paths`` that exists and cannot be written, or None. A folder that is not there
    is looked at once, not once per path in it (a fresh run's thousands of images)."""
    folders = {}
    for path in paths:
        folder = os.path.dirname(path)
        there = folders.get(folder)
        if there is None:
            there = folders[folder] = os.path.isdir(folder or ".")
        if there and not os.access(path, os.W_OK) and os.path.exists(path) and not os.path.islink(path):
            return str(path)
    return None
