"""A per-job log file.  Jobs run as threads of one Snakemake process, so each writes its own file
rather than going through the process-wide logging configuration."""

import datetime
from pathlib import Path


class JobLog:
    def __init__(self, path):
        self.path = Path(path) if path else None
        self._handle = None

    def __enter__(self):
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc):
        if self._handle:
            self._handle.close()

    def __call__(self, message):
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if self._handle:
            self._handle.write(f"{stamp} {message}\n")
            self._handle.flush()
