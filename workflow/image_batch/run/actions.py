"""What only a real run does, once it has started (Snakemake's ``onstart``: the DAG is built, no job
has run; never in a dry run, ``--touch``, ``--lint``, ``--report`` ...), and how it ends.

At the start: take the run lock, clear the previous run's stop flag and dead writers' temp files,
record the run (its estimate, the sheet for ``--report``), settle the response store's format,
submit and wait for batches (``mode: batch``; any mode: collect
the batches an earlier run left that cover this run's requests), start the progress line. At the end: the summary.
"""

import datetime
import json
import os
import sys
import threading
import time
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import atomic_write_bytes, remove_stale_parts
from image_batch.costs.bill import money
from image_batch.descriptions import prompts, references
from image_batch.descriptions.specs import MANIFEST, write_manifest
from image_batch.descriptions.specs import adopt as adopt_requests
from image_batch.images import failures, worker
from image_batch.images.store import is_remote, open_store, store_root
from image_batch.run import interrupt, ledger, lock, quiet
from image_batch.sync import chunks
from image_batch.sync import preflight as destination_check

LAST_RUN = Path("results/logs/last-run.json")
SUMMARY_LOG = Path("results/logs/summary.log")
MARKER = Path("results/_SUCCESS.json")


class Run:
    """One real run: started by :func:`start`, ended by :func:`finish`."""

    def __init__(self, plan, to_make):
        self.plan = plan
        self.to_make = to_make  # (folder, image_id) of the image jobs this run will run
        now = datetime.datetime.now(datetime.UTC)
        self.started = now
        self.id = now.strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"
        self.ledger = ledger.path_for(self.id)
        self.progress = None
        self.ended = False
        self.summary = None

    def record(self):
        return {
            "run": self.id,
            "started": self.started.isoformat(timespec="seconds"),
            "input_csv": self.plan.settings.input_csv,
            "input_sheet": self.plan.settings.input_sheet,
            "provider": self.plan.choices.provider,
            "images": len(self.plan.images),
            "image_jobs": len(self.to_make),
            "destination": self.plan.choices.destination.describe(),
            "estimate": self.plan.estimate,
        }


_current = []
_attempted = []  # a real run began to start (even if it stopped before its first job)


def image_jobs(workflow, rule="generate_image"):
    """(folder, image_id) of the image jobs this run will run (from the DAG Snakemake built)."""
    return [
        (job.wildcards_dict["folder"], job.wildcards_dict["image_id"])
        for job in workflow.dag.needrun_jobs()
        if job.rule.name == rule
    ]


def acts(workflow):
    """Whether this invocation really runs jobs (not a dry run, not --touch)."""
    return not workflow.dryrun and not workflow.touch


def cores_problem(workflow):
    """``--cores 0`` on this machine: Snakemake's scheduler starts no job and waits for ever (the
    progress line said "0 of N" until the run was killed). A cluster's jobs take no local cores."""
    cores = getattr(getattr(workflow, "resource_settings", None), "cores", None)
    if cores == 0 and getattr(workflow, "local_exec", True):
        return "--cores 0 lets no job start (the run would wait for ever): give --cores N (1 or more) or all"
    return None


def start(workflow, plan, out=sys.stderr):
    """``onstart``: everything a real run does before its first job."""
    if not acts(workflow):
        return None
    problem = cores_problem(workflow)
    if problem:
        raise UserError(f"{problem} (nothing was made)")
    _attempted.append(True)
    if plan.choices.missing_key:
        raise UserError(plan.choices.missing_key.replace("a real run stops before any image", "nothing was made"))
    for note in plan.keys_missing:  # rows on another provider whose key is not set
        raise UserError(note.replace("a real run stops before any image", "nothing was made"))
    if references.unfetched():  # planning did not fetch what this run needs: no job may start
        raise UserError(references.unfetched())
    lock.acquire()
    preflight(plan)
    # No other real run is alive here, but a dry run or a report may be: only dead writers' temp
    # files go, never those of a process still writing.
    remove_stale_parts("results", only_dead_writers=True)
    # request files of the earlier layout that hold this run's requests get their new names
    adopt_requests(plan.requests.adopt.values())
    chunks.remove_earlier_layout()  # the sync chunks before they were pages: nothing reads them
    root = store_root(plan.settings)
    if not is_remote(root):
        # the store may be shared with runs in other folders (or containers, whose pids we cannot
        # see): only temp files of dead writers that are also old enough to be abandoned
        remove_stale_parts(root, min_age=600)
    # the destination answers and takes a write before the first image is paid for
    how = plan.settings.sync
    note = destination_check.probe(plan.choices.destination, None, how.delete_removed, how.retry_mode, how.max_attempts)
    if note:
        print(f"Image.Batch: WARNING: {note}", file=out)
    failures.clear_stop()
    failures.clear_streak()
    run = Run(plan, image_jobs(workflow))
    _current.append(run)
    os.environ[ledger.VARIABLE] = str(run.ledger)
    os.environ[ledger.CATALOG_VARIABLE] = str(plan.settings.catalog_path)
    record = run.record()
    text = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8")
    atomic_write_bytes(ledger.RUNS / f"{run.id}.json", text, durable=False)
    atomic_write_bytes(LAST_RUN, text, durable=False)
    if plan.describing is not None:
        prompts.write_manifest(plan.specs, MANIFEST)
    else:
        write_manifest(plan.specs)
    references.keep_fetched()  # the pictures planning fetched from addresses: kept, never fetched again
    references.save_cache()  # what planning learnt of the reference pictures, for the next dry runs
    if plan.paid:
        note = open_store(plan.settings).adopt(plan.endpoint)
        if note:
            print(f"Image.Batch: {note}", file=out)
    if plan.paid and plan.batch_capable and run.to_make:
        # batch mode submits and waits; every run (live too) first collects, or waits for, the
        # batches recorded earlier that cover what it is about to pay for: never paid twice
        from image_batch.images.batch import run_before_jobs

        interrupt.waiting_for(
            "while waiting for the batches: they go on at the API; run the same command again to "
            "collect their answers (nothing is submitted twice)"
        )
        interrupt.install_early()  # again: Snakemake has put its own SIGTERM handler in since parsing
        if plan.settings.mode == "batch":
            prompts.write_before_batch(plan, plan.settings, out)
        else:  # the prompts' batches an earlier run left: collected, or waited for, not paid again
            prompts.settle_before_live(plan, plan.settings)
        run_before_jobs(
            [plan.spec_of(*image) for image in run.to_make if plan.spec_of(*image)["request"]["prompt"] is not None],
            plan.settings,
        )
    if plan.settings.progress_seconds and run.to_make:
        run.progress = Progress(run, plan.settings.progress_seconds, out)
        run.progress.start()
    # From here on jobs may pay: Ctrl-C / SIGTERM keep what is in flight (image_batch.run.interrupt).
    # Snakemake's graceful stop (its own SIGTERM handling) starts no new job and waits for the others.
    if worker.wanted(workflow):  # image jobs are threads of this process
        interrupt.install(
            stop_scheduling=workflow.scheduler.exit_gracefully,
            last_words=lambda: (finish(plan, ok=False), at_exit(workflow, plan, out)),
            out=out,
        )
    else:
        interrupt.leave_to_snakemake(workflow.scheduler.exit_gracefully)
    return run


def preflight(plan):
    """Before anything is written or called: the response store can take this run's paid answers."""
    if plan.paid:
        open_store(plan.settings).preflight(write=True)


def finish(plan, ok):
    """``onsuccess`` / ``onerror``: stop the progress line, keep the summary in the log; it is
    printed when the process exits (:func:`at_exit`), after Snakemake's own last lines."""
    if not _current or _current[-1].ended:
        return
    run = _current[-1]
    run.ended = True
    if run.progress:
        run.progress.stop()
    run.summary = summary(run, ok)
    if plan.describing is not None:  # the prompts written in this run, in the manifest too
        try:
            prompts.write_manifest(plan.specs, MANIFEST)
        except OSError:
            pass
    SUMMARY_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(SUMMARY_LOG, "a", encoding="utf-8") as handle:
        handle.write(f"{run.started.isoformat(timespec='seconds')} run {run.id}\n" + "\n".join(run.summary) + "\n\n")


def at_exit(workflow, plan, out=sys.stderr):
    """The last words of a real run: its summary (or, when Snakemake found nothing to do and so
    called neither onstart nor onsuccess, that everything is made). Nothing for other modes."""
    if _current:
        lines = _current[-1].summary
        if lines:
            print("\n".join(lines), file=out, flush=True)
        return
    if not acts(workflow) and workflow.executor_plugin is not None:
        for note in plan.dry_notes:  # what a real run would have stopped on, before any image
            print(f"Image.Batch: WARNING: {note}", file=out, flush=True)
    if _attempted or workflow.executor_plugin is None or not acts(workflow):
        return
    if quiet.NOTHING_TO_DO not in quiet.heard:
        return  # Snakemake stopped before planning any job (an error it has reported)
    where = plan.choices.destination.describe()
    print(
        f"Image.Batch: summary: nothing to do: all {len(plan.images)} image(s) are made and synced to {where}"
        + (f" (marker {MARKER})" if MARKER.exists() else ""),
        file=out,
        flush=True,
    )


def _read_marker(run):
    """The local marker, with this run's counts, when this run synced (the marker keeps the time and
    counts of the sync that last changed the destination; the sync's own record has this run's)."""
    try:
        marker = json.loads(MARKER.read_text(encoding="utf-8"))
        synced = json.loads(run.plan.synced_record.read_text(encoding="utf-8"))
        created = datetime.datetime.fromisoformat(synced["created"])
        marker["counts"] = synced["counts"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return marker if created >= run.started.replace(microsecond=0) else None


def summary(run, ok):
    """The end-of-run summary: made, served from the store, failed (listed), placeholders, cost
    against the estimate, destination and markers."""
    plan = run.plan
    counts = ledger.Reader(run.ledger).read().counts()
    made = counts[ledger.PAID] + counts[ledger.STORE] + counts[ledger.OFFLINE]
    stopped_by = interrupt.received()
    how = f"stopped by {stopped_by}" if stopped_by else "finished" if ok else "ended with errors"
    lines = [f"Image.Batch: summary of run {run.id} ({how})"]
    parts = [f"{len(plan.images)} image(s) in the sheet", f"{len(run.to_make)} to make"]
    parts.append(
        f"{made} made ({counts[ledger.PAID]} paid for, {counts[ledger.STORE]} served from the response store"
        + (f", {counts[ledger.OFFLINE]} OFFLINE PLACEHOLDER(S)" if counts[ledger.OFFLINE] else "")
        + ")"
    )
    parts.append(f"{counts[ledger.FAILED]} failed")
    not_run = len(run.to_make) - made - counts[ledger.FAILED]
    if not_run > 0:
        parts.append(f"{not_run} not made")
    lines.append("  images: " + ", ".join(parts))
    if stopped_by:
        abandoned = interrupt.abandoned()
        if abandoned is None:
            text = "the calls in flight were finished and their answers kept"
        else:
            text = f"{abandoned} call(s) in flight were abandoned (the API may bill them; their answers are lost)"
        if not_run > 0:
            rest = "make the rest"
        elif counts[ledger.FAILED]:
            rest = "retry the failed image(s) and sync"
        else:  # every image was made before the stop: only the sync (and the markers) are left
            rest = "sync them"
        lines.append(f"  stopped by {stopped_by}: {text}; run the same command again to {rest}")
    if plan.paid:
        estimate = plan.estimate or {}
        batch = plan.settings.mode == "batch"
        guess = estimate.get("batch" if batch else "live")
        if guess is not None:  # answers collected from batches submitted earlier are paid in this run too
            guess += estimate.get("in_batch_usd") or 0.0
        text = f"  cost: {money(counts['usd'])} paid in this run"
        if counts["unpriced"]:
            text += f" (+{counts['unpriced']} unpriced)"
        if guess is not None:
            text += f"; estimate before the run: {money(guess)}"
            if guess:
                text += f" ({(counts['usd'] - guess) / guess:+.0%})"
            if estimate.get("unpriced"):
                text += f" (+{estimate['unpriced']} unpriced)"
        if counts[ledger.PROMPT]:
            text += f"; prompts written by the model: {money(counts['prompt_usd'])} for {counts[ledger.PROMPT]}"
            estimate = plan.prompt_estimate or {}
            if estimate.get("usd") is not None:
                text += f" (estimate {money(estimate['usd'])})"
        lines.append(text)
    marker = _read_marker(run)
    if marker is not None:
        total = (marker.get("cost") or {}).get("total")
        cost = f"; all images {money(total)}" if total is not None and plan.paid else ""
        where = plan.choices.destination
        remote = f"s3://{where.location}/{where.prefix}" if where.kind == "s3" else f"{where.location}/{where.prefix}"
        lines.append(
            f"  destination: {marker.get('destination')} ({marker['counts']['uploaded']} file(s) sent); "
            f"markers: {remote}_SUCCESS.json and {MARKER}{cost}"
        )
        removed = marker.get("removed") or {}
        if removed.get("listed") or removed.get("kept_not_ours") or removed.get("kept_changed"):
            lines.append(f"  removed rows: {removed['summary']}")
    else:
        lines.append(f"  destination: {plan.choices.destination.describe()}: not synced in this run")
    failed = plan.failure_summary()
    if failed:
        lines.extend("  " + line.removeprefix("Image.Batch: ") for line in failed.splitlines())
    lines.append(f"  log: {SUMMARY_LOG}; images: results/images/; ledger: {run.ledger}")
    return lines


class Progress:
    """A progress line every few seconds: done / total, rate, time left, cost so far."""

    def __init__(self, run, every, out):
        self.run, self.every, self.out = run, float(every), out
        self.reader = ledger.Reader(run.ledger)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="image-batch-progress", daemon=True)
        self.began = time.monotonic()

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)

    def _loop(self):
        while not self._stop.wait(self.every):
            print(f"Image.Batch: {self.line()}", file=self.out, flush=True)

    def line(self):
        counts = self.reader.read().counts()
        total = len(self.run.to_make)
        done = counts[ledger.PAID] + counts[ledger.STORE] + counts[ledger.OFFLINE] + counts[ledger.FAILED]
        elapsed = max(time.monotonic() - self.began, 1e-6)
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else None
        text = f"progress: {done:,} of {total:,} image(s), {rate:.1f}/s"
        if left is not None and done < total:
            text += f", about {_duration(left)} left"
        if counts[ledger.FAILED]:
            text += f", {counts[ledger.FAILED]} failed"
        if self.run.plan.paid:
            text += f", {money(counts['usd'])} so far"
        return text


def _duration(seconds):
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
