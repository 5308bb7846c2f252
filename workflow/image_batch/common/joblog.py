"""A per-job log file.  Jobs run as threads of one Snakemake process, so each writes its own file
rather than going through the process-wide logging configuration."""

import datetime
import sys
from pathlib import Path


class JobLog:
    def __init__(self, path, echo=False):
        self.path = Path(path) if path else None
        self.echo = echo  # also print each line to stderr (work done before Snakemake's own log starts)
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
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        if self._handle:
            self._handle.write(f"{stamp} {message}\n")
            self._handle.flush()
        if self.echo:
            print(f"Image.Batch: {message}", file=sys.stderr, flush=True)
