"""Pace API calls to the account's rate limit, shared by every image job of the process.

The pace is the smallest of ``openai.requests_per_minute`` (config) and the limits the API reports
in ``x-ratelimit-limit-requests`` and, for image models limited in images per minute,
``x-ratelimit-limit-images`` (each image request makes one image), times a small safety margin, so
calls go out evenly just under the limit instead of in bursts that earn 429s. When the API says
``x-ratelimit-remaining-requests: 0`` or ``x-ratelimit-remaining-images: 0``, or answers 429 with
``retry-after``, every job waits until then, rather than each retrying on its own.
"""

import re
import threading
import time

from image_batch.images import failures

MARGIN = 0.97
UNITS = ("requests", "images")  # x-ratelimit-*-<unit> headers that limit image generation
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_duration(text):
    """OpenAI's reset durations: "1s", "6m0s", "120ms", "1h2m3.5s" -> seconds (None if unreadable)."""
    match = _DURATION.match((text or "").strip())
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


class Pacer:
    def __init__(self, per_minute=None):
        self.configured = float(per_minute) if per_minute else None
        self.reported = {}  # "requests" / "images" -> the limit the API reported
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @property
    def per_minute(self):
        limits = [v for v in (self.configured, *self.reported.values()) if v]
        return min(limits) * MARGIN if limits else None

    def wait(self):
        """Block until this call may go out: its turn in the pace, and no pause, also one that began
        while it was waiting for its turn (a 429 met by another job holds this one back too). A
        stopping run makes no call: it waits no longer (the caller then starts no call)."""
        while True:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next, self._paused_until)
                if start <= now:
                    rate = self.per_minute
                    self._next = now + (60.0 / rate if rate else 0.0)
                    return
            failures.pause(start - now)
            if failures.stopped_here():
                return

    def observe(self, headers):
        """Learn from an answer's x-ratelimit-* headers."""
        if not headers:
            return
        for unit in UNITS:
            try:
                limit = float(headers.get(f"x-ratelimit-limit-{unit}") or 0)
            except ValueError:
                limit = 0
            if limit > 0:
                self.reported[unit] = limit
            if str(headers.get(f"x-ratelimit-remaining-{unit}", "")).strip() == "0":
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{unit}"))
                if reset:
                    self.pause(reset)

    def pause(self, seconds):
        """Everyone waits ``seconds`` from now (a 429's retry-after, or an exhausted budget)."""
        if seconds:
            with self._lock:
                self._paused_until = max(self._paused_until, time.monotonic() + seconds)


_pacers = {}
_pacers_lock = threading.Lock()


def pacer_for(key, per_minute=None):
    """The process-wide pacer for ``key`` (endpoint and model)."""
    with _pacers_lock:
        if key not in _pacers:
            _pacers[key] = Pacer(per_minute)
        return _pacers[key]
