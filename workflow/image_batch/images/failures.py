"""Per-image failure records, the run-wide stop flag, and the same-refusal safety net.

A failed image leaves ``results/logs/failures/<folder>/<image_id>.json`` saying why; a successful
retry removes it.  A fatal API answer (bad key, billing, a retired model, a refused setting) writes
``results/logs/STOP.json``: every later image job fails at once without calling the API, so the
run ends quickly with one clear message.  The flag is cleared when a real run starts again.

The safety net: the same refusal code (a 400 the classification did not see as fatal) on several
rows in a row, with no success in between, is almost surely about the settings, not the rows: it
stops the run too (config ``retry.same_error_stop``; moderation refusals are about their prompt
and never count).
"""

import datetime
import fcntl
import json
import threading
from pathlib import Path

from image_batch.common.fileio import atomic_write_json
from image_batch.common.redact import redact

FAILURES = Path("results/logs/failures")
STOP_FLAG = Path("results/logs/STOP.json")
STREAK = Path("results/logs/refusals.json")


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def record_path(folder, image_id):
    return FAILURES / folder / f"{image_id}.json"


def record_failure(spec, disposition, reason, attempts):
    atomic_write_json(
        record_path(spec["folder"], spec["image_id"]),
        {
            "image_id": spec["image_id"],
            "context": spec["context"],
            "folder": spec["folder"],
            "disposition": disposition,
            "reason": redact(reason),
            "attempts": attempts,
            "time": _now(),
        },
    )


def clear_failure(folder, image_id):
    record_path(folder, image_id).unlink(missing_ok=True)


def stop_run(reason):
    atomic_write_json(STOP_FLAG, {"reason": redact(reason), "time": _now()})


_stopped_here = []  # a stop for this process only: its run is stopping (Ctrl-C, SIGTERM) or has ended
_stopping = threading.Event()


def stop_here(reason):
    """Start no more API calls from this process (the calls in flight go on; other processes and later
    runs are not affected)."""
    _stopped_here.append(reason)
    _stopping.set()


def pause(seconds):
    """Sleep ``seconds`` before a call (pacing, backoff), cut short when this process stops calling."""
    _stopping.wait(seconds)


def stopped_here():
    """Why this process starts no more API calls, or None."""
    return _stopped_here[0] if _stopped_here else None


def stop_reason():
    """Why the run stopped calling the API (a fatal answer: results/logs/STOP.json), or None."""
    try:
        return json.loads(STOP_FLAG.read_text(encoding="utf-8"))["reason"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def clear_stop():
    STOP_FLAG.unlink(missing_ok=True)


def clear_streak():
    STREAK.unlink(missing_ok=True)


def _streak_update(change):
    STREAK.parent.mkdir(parents=True, exist_ok=True)
    with open(STREAK.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            data = json.loads(STREAK.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            data = {}
        data = change(data)
        if data:
            atomic_write_json(STREAK, data)
        else:
            STREAK.unlink(missing_ok=True)
        return data


def note_refusal(code):
    """Count one more row refused with ``code`` since the last success; returns the count."""
    code = code or "(no code)"

    def change(data):
        count = data.get(code, 0) + 1 if set(data) <= {code} else 1
        return {code: count}

    return _streak_update(change)[code]


def note_success():
    """An image was made: the refusal streak starts again."""
    if STREAK.exists():
        _streak_update(lambda data: {})


def summary(images, places, sheet):
    """A text listing every failed image of this plan, or '' when none failed."""
    failed, stopped = [], 0
    for folder, image_id in images:
        try:
            record = json.loads(record_path(folder, image_id).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            continue
        if record["disposition"] == "stopped":
            stopped += 1
        else:
            failed.append(record)
    reason = stop_reason()
    if not failed and not stopped and not reason:
        return ""
    out = []
    if reason:
        out.append(f"Image.Batch STOPPED calling the API: {reason}")
        out.append(f"  {stopped} image(s) were not attempted because of this. Fix it and run again.")
    if failed:
        out.append(f"Image.Batch: {len(failed)} image(s) failed:")
        for record in failed:
            place = places.get(record["image_id"], "?")
            if isinstance(place, int):
                place = f"line {place}"
            out.append(f"  {sheet}, {place}, image_id {record['image_id']} ({record['context']}): {record['reason']}")
    out.append("Run the same command again to retry; images already made are kept and not paid for again.")
    return "\n".join(out)
