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
