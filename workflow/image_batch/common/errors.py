"""Errors meant for the person running the workflow, not for a traceback."""

import re


def _line_of(problem):
    """Where a sheet problem is, for sorting: "line 7, ..." (text) or "sheet 'Images', row 7, ..." (workbook)."""
    match = re.match(r"(?:sheet .*?, )?(?:line|row) (\d+)", problem)
    return int(match.group(1)) if match else 0


class UserError(Exception):
    """A problem the user must fix (bad input, missing setting). ``str()`` is the whole message."""


class SheetError(UserError):
    """The input sheet has one or more problems; all are listed at once."""

    def __init__(self, path, problems, limit=200):
        self.path = str(path)
        self.problems = list(problems)
        shown = sorted(self.problems, key=_line_of)[:limit]
        lines = [f"{self.path}: {len(self.problems)} problem(s) in the input sheet:"]
        lines += [f"  {self.path}, {p}" for p in shown]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        lines.append("Nothing was generated. Fix the sheet and run again.")
        super().__init__("\n".join(lines))


def _shown(path):
    """``path`` as the user would type it: relative to the current folder when inside it."""
    import os

    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def _file_in_the_way(path):
    """The first part of ``path`` that is a file where a folder is needed, or None."""
    from pathlib import Path

    for parent in reversed(Path(path).parents):
        if parent != Path(".") and parent.exists() and not parent.is_dir():
            return parent
    return None


def os_problem(exc, what=None):
    """One line for an OSError met while reading or writing the project's files: what is wrong (the
    path and why) and the fix. ``what`` names the file's role ("the response store")."""
    import errno
    import os

    path = exc.filename if exc.filename is not None else "?"
    name = _shown(path)
    role = f" ({what})" if what else ""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        top = name.split("/")[0] if not os.path.isabs(name) else name
        return (
            f"{name}{role}: permission denied: the user running the workflow (uid {os.getuid()}) may not "
            f"write or read it (a folder made by another user, or by a container run as root?). Make it "
            f'yours (sudo chown -R "$(id -u):$(id -g)" {top}) or run as its owner, then run again'
        )
    if code == errno.EROFS:
        return f"{name}{role} is on a read-only file system: run from a writable folder (or mount it read-write)"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device of {name}{role}: free some space (df -h) and run again"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(path) or (path if code == errno.EEXIST else None)
        if blocker is not None:
            return (
                f"{_shown(blocker)}{role} is a file where a folder is needed (for {name}): move the file away"
                + (" (or point the setting at a folder)" if what else "")
                + ", then run again"
            )
    if code == errno.EISDIR:
        return f"{name}{role} is a folder where a file is needed: move it away, then run again"
    return f"{name}{role}: {exc.strerror or exc}: fix it and run again"
