"""Plan files named by their content: ``<stem>.<digest16>.json``, digest16 being the first 16 hex
digits of the SHA-256 of the file's bytes.

Planning (every dry run, estimate, --touch, --lint, --report) only names these files; a rule of a
real run writes one when it is missing. A name always holds the same bytes, so nothing a dry run
computes can change a file a live run reads, and a file is never rewritten: a changed request or
member list is a new name (missing, so its job and what depends on it are due).

Going back to earlier content (A, then B, then A) would find A's old file, dated before what was
made from B, and look up to date: so the rule that writes a stem's new file first deletes the
stem's other files (its ``superseded`` ones, found by the one listing of its folder planning
made). Only a real run, under the run lock, writes or deletes these files.

A missing plan file whose consumer's outputs exist would not be made: Snakemake does not remake a
missing intermediate file for a job that is otherwise up to date. So the files planning found
missing are targets of the run (rule all), and their consumers run after them.

A consumer's input only where it says something (``Files.add`` with ``consumer``): a file missing
(a changed content) or newer than the consumer's output (written by a run that did not finish the
consumer). A consumer not made yet is due anyway, and writes the file itself (``Files.ensure``);
one made since the file was, with the same content, has nothing to compare. So a fresh or an
unchanged plan has no job and no input for these files: Snakemake builds a job for every input it
is given, even one that exists.
"""

import hashlib
import os
import re
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes

DIGITS = 16
NAME = re.compile(r"(?P<stem>.+)\.(?P<digest>[0-9a-f]{16})\.json")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGITS]


def name(stem, data: bytes) -> str:
    return f"{stem}.{digest(data)}.json"


def scan(directory):
    """{stem: [file names]} of the content-named files in ``directory`` (one listing), and the set
    of its other ``*.json`` names (files of the earlier layout, ``<stem>.json``)."""
    named, plain = {}, set()
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return named, plain
    with entries:
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            match = NAME.fullmatch(entry.name)
            if match:
                named.setdefault(match["stem"], []).append(entry.name)
            else:
                plain.add(entry.name)
    return named, plain


class Files:
    """Content-named files of one folder: what planning decided (path -> bytes) and, per path,
    the files of the same stem it replaces. Small plan files only (chunk and sheet member lists);
    request files are looked up from the plan's specs (see descriptions.specs)."""

    def __init__(self, directory, scanned=True):
        self.directory = Path(directory)
        self.named = scan(self.directory)[0] if scanned else {}
        self.content = {}  # path -> bytes
        self.superseded = {}  # path -> [older paths of the same stem]
        self.scanned = scanned
        self.due = []  # paths not there (or not looked for): targets of the run, see below
        self.unasked = set()  # paths their consumer does not take (see the module's doc): it writes them

    def add(self, stem, data: bytes, consumer=None) -> str:
        """The file of ``stem`` holding ``data`` (its path); ``consumer``: the output of the one
        job that takes it (see the module's doc)."""
        path = str(self.directory / name(stem, data))
        self.content[path] = data
        there = self.scanned and Path(path).name in self.named.get(stem, ())
        if self.scanned and consumer is not None:
            made = _mtime(consumer)
            own = _mtime(path) if there and made is not None else None
            if made is None or (own is not None and own <= made):
                self.unasked.add(path)
        if not there and path not in self.unasked:
            self.due.append(path)
        others = [n for n in self.named.get(stem, ()) if str(self.directory / n) != path]
        if others:
            self.superseded[path] = [str(self.directory / n) for n in others]
        return path

    def input(self, path):
        """The consumer's input: ``path``, or none (its consumer writes it: ``ensure``)."""
        return [] if path in self.unasked else path

    def ensure(self, path, log=None):
        """The consumer's job (a real run): write ``path`` when the consumer does not take it and it
        is not there (the consumer was not made yet)."""
        if path in self.unasked and not os.path.exists(path):
            write(path, self.content[path], self.superseded.get(path, ()), log)

    def write(self, name, output=None, log=None):
        """The rule's job (a real run): write the file ``name`` (``<stem>.<digest16>.json``) with the
        content planning gave it, at ``output`` (where Snakemake wants it: with a storage
        provider, a local copy)."""
        path = str(self.directory / name)
        data = self.content.get(path)
        if data is None:
            raise UserError(f"{path} is not a file of this run's plan; run without naming it")
        write(output or path, data, self.superseded.get(path, ()), log)


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def write(path, data: bytes, superseded=(), log=None):
    """Write a content-named file after deleting the files it replaces (first, so that a crash in
    between leaves no older file of the stem beside the new one: only its absence, which the next
    run fills), and their (empty) job logs, which sit beside ``log``, named as they are. Durable: a
    file that is never rewritten must survive a power cut whole."""
    path = Path(path)
    if NAME.fullmatch(path.name) is None or NAME.fullmatch(path.name)["digest"] != digest(data):
        raise UserError(f"{path}: the content planned for it does not match its name; run again")
    old_logs = [Path(log).parent / (Path(old).name[: -len(".json")] + ".log") for old in superseded] if log else []
    for old in [*superseded, *old_logs]:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass
    atomic_write_bytes(path, data, durable=True)
