"""A stand-in for the OpenAI Images API on loopback, for tests and benchmarks.

It speaks the real HTTP API (``POST /v1/images/generations``), so the real ``openai`` client reaches it
through ``base_url`` / ``OPENAI_BASE_URL``, and it answers as the real API did on ``today`` (default 2026-11-27):
the models of that day, their settings, refusals, usage and error bodies come from
:mod:`tests.support.openai_models` (one table of facts with their sources; independent of the workflow's own
catalogue).  ``models=`` restricts the account to some of them (others answer 404 ``model_not_found``);
``retired_answer`` picks how a retired model is refused ("invalid_value": 400 param model, the default;
"model_not_found" or "deprecated": 404); ``usage_shape="no_details"`` leaves ``output_tokens_details`` out of
``usage``.  Images are real and of the size the answer states (the size asked for; "auto" makes 1024x1024), one
solid colour taken from sha256(prompt) (see :func:`expected_color`), and cheap: a PNG is a one-colour palette image
of a few hundred bytes (``render_size`` forces one size, e.g. (64, 64) for benchmarks comparable with old figures).

Faults are injected per prompt (``set_behavior`` / ``fail_times``), by arrival (``fail_nth``: the n-th request
from now, whatever its prompt), for everything (``default_behavior``), or
at random (``set_fault_mix``: a seeded share of the requests no explicit rule matched) with the kinds listed in
``BEHAVIORS`` (``TRANSIENT`` ones are worth retrying and are the mix's default kinds, ``MORE_TRANSIENT`` ones too but
only when asked for, ``PERMANENT`` ones are not worth retrying).  An optional limiter (``rate_limit_per_minute`` /
``set_rate_limit``), counting requests or images (``unit``), answers 429 ``rate_limit_exceeded`` beyond its budget.
Every request is recorded, with the behaviour kind used in ``call["behavior"]`` and when it arrived and was
answered (``call["time"]`` / ``call["answered"]``: wall clock; ``call["arrived_monotonic"]`` /
``call["answered_monotonic"]``: ``time.monotonic()``, comparable with the test's own, immune to clock steps);
``paid_calls`` are the ones the real API would have billed (status 200 with a ``data`` list fully sent, whatever
that data held) and ``good_paid_calls`` the paid ones whose data was a valid image; ``stats()`` sums the log up.
``fixed_created`` makes every answer's ``created`` that number (default: the time of the answer).  ``hold()`` keeps
the requests that arrive in flight, unanswered, until ``release()`` (``held()`` counts them): a run that is surely
still working, with no timing to guess (before they are routed).  ``hold_answers()`` keeps every generation request
waiting (as a slow model does, for as long as a test needs) until ``release_answers()``;
``in_flight`` counts the generation requests received and not yet answered (``wait_in_flight(n)`` waits for n,
``wait_answered()`` for none).
A held call is billed when it is answered, as the real API bills a call it finished even if the client left.

The Files and Batch APIs (``/v1/files``, ``/v1/batches``: upload a JSONL of generation requests, create a batch,
poll it, download its output and error files) come from :mod:`tests.support.fake_batches`: lines are answered by
the same rules as live calls, but logged apart (``batch_lines``, ``batch_requests``, ``batch_stats()``), so the
live counters above only ever count live calls.  ``batch_polls_to_complete``, ``expire_batches_after_lines`` and
``fail_next`` steer batches; see that module.

Standalone: ``python -m tests.support.fake_openai --port 0`` prints ``READY <base_url>`` and serves until
SIGTERM.  Standard library + Pillow only.
"""

import base64
import collections
import functools
import hashlib
import io
import json
import math
import random
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from . import openai_models as real
from .fake_batches import BatchAPI, parse_query
from .loopback import LoopbackServer
from .openai_models import Refusal, error_body

# Faults a client should retry (the default kinds of set_fault_mix, in a fixed order so a seed means something).
TRANSIENT = (
    "rate_limit",
    "server_error",
    "overloaded",
    "truncated",
    "reset",
    "bad_base64",
    "not_image",
    "timeout_408",
    "conflict_409",
    "slow_down",
    "bad_gateway",
)
# Transient faults added later: outside the mix's default kinds, so an existing seed keeps drawing the same faults.
# "bad_retry_after": a 429 whose retry-after is neither seconds nor an HTTP date, and no retry-after-ms.
MORE_TRANSIENT = ("bad_retry_after",)
# Faults a retry cannot fix.  "retired_model": the requested model answers as a retired one (see retired_answer).
PERMANENT = frozenset(
    {
        "moderation",
        "quota",
        "content_policy",
        "billing",
        "forbidden",
        "model_not_found",
        "retired_model",
        "invalid_request",
    }
)
# Answers that are a 200 with a fully sent, valid image (what good_paid_calls counts).
GOOD = frozenset({"ok", "jpeg", "webp", "url", "slow"})
BEHAVIORS = GOOD | PERMANENT | frozenset(TRANSIENT) | frozenset(MORE_TRANSIENT)
FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"  # multipart: image[] (1-16 png/webp/jpeg, each < 50 MB), optional mask (PNG < 4 MB)
EDIT_MAX_IMAGES, EDIT_MAX_BYTES, MASK_MAX_BYTES = 16, 50 * 1024 * 1024, 4 * 1024 * 1024
RESPONSES = "/v1/responses"  # chat models writing prompts (Image.Batch's describe:)
FILES = "/v1/_fake/images/"  # where "url" behaviour images are served (GET)


def _real(name):
    """The status, message, type and code of an error the real API sends (openai_models.ERRORS)."""
    status, type_, code, _param, message, _source = real.ERRORS[name]
    return status, message, type_, code


# Canned error answers: behaviour -> (status, message, type, code, extra headers).  "{model}" is filled in; the
# "moderation" and "retired_model" bodies are made per request (they name the request id / today's models).
_FAULTS = {
    "moderation": (*_real("moderation_blocked"), {}),
    "rate_limit": (
        429,
        "Rate limit exceeded for images per minute in organization org-standin. Limit: 5/1min. Current: 6/1min. "
        "Please try again in 50ms.",
        "requests",
        "rate_limit_exceeded",
        {"retry-after-ms": "50", "retry-after": "1"},
    ),
    "bad_retry_after": (
        429,
        "Rate limit exceeded for images per minute in organization org-standin. Limit: 5/1min. Current: 6/1min. "
        "Please try again soon.",
        "requests",
        "rate_limit_exceeded",
        {"retry-after": "soon"},  # neither seconds nor an HTTP date; no retry-after-ms
    ),
    "quota": (*_real("insufficient_quota"), {}),
    "server_error": (
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        {},
    ),
    "overloaded": (503, "The server is overloaded or not ready yet.", "server_error", "server_is_overloaded", {}),
    "timeout_408": (408, "Request timed out.", "timeout_error", "request_timeout", {}),
    "conflict_409": (
        409,
        "The request conflicted with another request in progress. Please try again.",
        "invalid_request_error",
        "conflict",
        {},
    ),
    "slow_down": (
        429,
        "Please reduce your rate of requests.",
        "requests",
        "slow_down",
        {"retry-after-ms": "50", "retry-after": "1"},
    ),
    "content_policy": (  # the legacy DALL-E form of a moderation refusal
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        "invalid_request_error",
        "content_policy_violation",
        {},
    ),
    "billing": (*_real("billing_hard_limit_reached"), {}),
    "forbidden": (
        403,
        "You are not allowed to generate images with this organization.",
        "invalid_request_error",
        None,
        {},
    ),
    "model_not_found": (*_real("model_not_found"), {}),
    "retired_model": (*_real("retired_model"), {}),
    # a 400 about the row itself (no setting named): what the same-refusal safety net is for
    "invalid_request": (
        400,
        "Invalid prompt: your prompt could not be processed.",
        "invalid_request_error",
        "invalid_prompt",
        {},
    ),
}
# Faults whose body is not OpenAI's JSON: behaviour -> (status, content type, body), like a proxy in front.
_RAW_FAULTS = {
    "bad_gateway": (
        502,
        "text/html",
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>"
        b"\r\n</body>\r\n</html>\r\n",
    ),
}
UNITS = ("requests", "images")  # what a limiter counts


@dataclass(frozen=True)
class Behavior:
    """How to answer one request: ``kind`` is one of BEHAVIORS; ``delay`` (seconds) is used by "slow";
    ``retry_after`` (seconds) is what a 429 ("rate_limit", "slow_down") asks to wait (default: its canned 50 ms)."""

    kind: str = "ok"
    delay: float = 1.0
    retry_after: float | None = None

    def __post_init__(self):
        if self.kind not in BEHAVIORS:
            raise ValueError(f"unknown behaviour {self.kind!r}; expected one of {sorted(BEHAVIORS)}")


def _behavior(value):
    return value if isinstance(value, Behavior) else Behavior(str(value))


@dataclass
class _FaultMix:
    rate: float
    kinds: tuple
    exclude: tuple
    rng: random.Random


def expected_color(prompt):
    """The (r, g, b) colour of every image the fake makes for ``prompt``."""
    return tuple(hashlib.sha256(prompt.encode("utf-8")).digest()[:3])


def render_image(prompt, output_format="png", size=(1024, 1024)):
    """Encoded image bytes for ``prompt``: a solid ``expected_color(prompt)`` RGB image of ``size`` (webp is lossless).

    Cheap at any size: a PNG's compressed pixels are made once per size (see :func:`_png_parts`); only the first
    pixel's four bytes, stored uncompressed, and two checksums differ from prompt to prompt.  JPEG and WebP are
    encoded once per colour and size."""
    size = (int(size[0]), int(size[1]))
    if output_format != "png":
        return _encoded(expected_color(prompt), output_format, size)
    head, rest, rest_adler, rest_length = _png_parts(size)
    first = bytes((1, *expected_color(prompt)))  # row 0, filter Sub: the first pixel; every later byte is 0
    stored = b"\x00" + struct.pack("<HH", len(first), 0xFFFF ^ len(first)) + first  # a non-final stored block
    adler = _adler32_concat(zlib.adler32(first), rest_adler, rest_length)
    idat = b"IDAT" + b"\x78\x01" + stored + rest + struct.pack(">I", adler)
    return head + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat)) + _PNG_END


_PNG_END = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


@functools.lru_cache(maxsize=32)
def _png_parts(size):
    """What a solid RGB PNG of ``size`` shares with every other colour: the signature and IHDR, and the raw deflate
    blocks (final one included) of its pixel rows after the first pixel: row 0 filtered Sub (zeros after the first
    pixel), every later row filtered Up (all zeros); with the Adler-32 and length of those rows."""
    width, height = size
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    rows = [bytes(3 * width - 3)] + [b"\x02" + bytes(3 * width)] * (height - 1)
    adler, length, out = 1, 0, []
    for row in rows:
        adler, length = zlib.adler32(row, adler), length + len(row)
        out.append(deflate.compress(row))
    out.append(deflate.flush())
    return head, b"".join(out), adler, length


def _adler32_concat(first, second, second_length):
    """The Adler-32 of A + B from those of A and B (zlib's adler32_combine)."""
    base = 65521
    low = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % base
    high = ((first >> 16) + (second >> 16) + second_length * ((first & 0xFFFF) - 1)) % base
    return (high << 16) | low


@functools.lru_cache(maxsize=256)
def _encoded(color, output_format, size):
    buffer = io.BytesIO()
    options = {"lossless": True} if output_format == "webp" else {}
    Image.new("RGB", size, color).save(buffer, FORMATS[output_format], **options)
    return buffer.getvalue()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake = None  # the owning FakeOpenAI, set before serving

    def handle_error(self, request, client_address):
        # Clients hanging up (timeouts, reset tests) are expected: keep stderr quiet, but show real bugs.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every answer carries Content-Length
    server_version = "fake-openai"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        self.server.fake._handle(self, "POST")

    def do_GET(self):
        self.server.fake._handle(self, "GET")

    def do_DELETE(self):
        self.server.fake._handle(self, "DELETE")


def _json_body(raw, call):
    """(the request's JSON object, None), or (None, the 400 the real API gives for a body that is not one)."""
    try:
        body = call["body"] = json.loads(raw or b"null")
    except ValueError:
        return None, (400, error_body("We could not parse the JSON body of your request."), {})
    if not isinstance(body, dict):
        return None, (400, error_body("The request body must be a JSON object."), {})
    return body, None


class FakeOpenAI(BatchAPI, LoopbackServer):
    """The fake server.  ``with FakeOpenAI() as srv: OpenAI(base_url=srv.base_url, ...)``."""

    server_class, handler_class = _Server, _Handler
    thread_name, owner_attr = "fake-openai", "fake"

    def __init__(
        self,
        api_key=None,
        models=None,
        host="127.0.0.1",
        port=0,
        render_size=None,
        latency=0.0,
        default_model="dall-e-2",
        rate_limit_per_minute=None,
        rate_limit_window=60.0,
        fixed_created=None,
        batch_polls_to_complete=1,
        today=real.TODAY,
        retired_answer="invalid_value",
        usage_shape="details",
        rate_limit_unit="requests",
    ):
        """``models``: the model names this account may use (None: every model of the real table; names must be in
        the table, see :data:`tests.support.openai_models.MODELS`).  ``today``: the date whose models answer (may be
        changed later: ``srv.today = date(...)``).  ``default_model``: what the API assumes when a request names no
        model (dall-e-2, its historic default, retired since 2026-05-12: such requests are refused as retired)."""
        self.api_key = api_key  # None: any Bearer key is accepted (but one is required)
        if models is not None:
            models = set(models)
            unknown = sorted(models - set(real.MODELS))
            if unknown:
                raise ValueError(f"models not in the real model table: {unknown}; known: {sorted(real.MODELS)}")
        self.models = models
        if retired_answer not in real.RETIRED_ANSWERS:
            raise ValueError(f"retired_answer must be one of {real.RETIRED_ANSWERS}, not {retired_answer!r}")
        if usage_shape not in real.USAGE_SHAPES:
            raise ValueError(f"usage_shape must be one of {real.USAGE_SHAPES}, not {usage_shape!r}")
        self.today = today
        self.retired_answer = retired_answer
        self.usage_shape = usage_shape
        self.host, self._port = host, port
        self.render_size = None if render_size is None else tuple(render_size)  # None: the size the answer states
        self.latency = float(latency)  # seconds added to every request
        self.default_model = default_model  # what the real API assumes when "model" is omitted
        self.fixed_created = fixed_created  # None: answers carry the current time as "created"
        self._open = threading.Event()  # cleared by hold(): requests wait, in flight, until release()
        self._open.set()
        self._held_count = 0  # requests hold() keeps in flight now
        self._lock = threading.Lock()
        self._calls = []
        self._overrides = []  # [(substring, Behavior)], first match wins
        self._fail_times = []  # [[substring, Behavior, remaining]]
        self._fail_nth = []  # [[requests still to come before it, Behavior]]
        self._files = {}  # name -> (bytes, content type) for the "url" behaviour
        self._default = Behavior()
        self._mix = None  # a _FaultMix once set_fault_mix is called
        self._limit = None  # requests or images allowed per window (None: unlimited)
        self._window = 60.0  # seconds
        self._unit = "requests"  # what the limiter counts
        self._slots = collections.deque()  # monotonic times of the units used still inside the window, one per unit
        self._server = self._thread = None
        self._flight = threading.Condition()  # guards _in_flight and _held
        self._in_flight = 0  # generation requests received and not yet answered
        self._held = False  # hold_answers(): generation answers wait until release_answers()
        self.set_rate_limit(rate_limit_per_minute, rate_limit_window, rate_limit_unit)
        self._init_batches(batch_polls_to_complete)

    @property
    def current_models(self):
        """The model names answering on ``today`` (within ``models`` when set), in the real table's order."""
        return real.current_models(self.today, self.models)

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}/v1"

    # -- recording ----------------------------------------------------------------------------------------------

    @property
    def calls(self):
        with self._lock:
            return list(self._calls)

    def calls_for(self, prompt):
        return [call for call in self.calls if _field(call["body"], "prompt") == prompt]

    @property
    def paid_calls(self):
        return [call for call in self.calls if call.get("paid")]

    @property
    def good_paid_calls(self):
        """Paid calls whose data held a valid image (behaviour ok, jpeg, webp, url or slow)."""
        return [call for call in self.calls if call.get("paid") and call.get("behavior") in GOOD]

    # -- answers held back (a slow model, as slow as a test needs) ----------------------------------------------

    @property
    def in_flight(self):
        """Generation requests received and not yet answered."""
        with self._flight:
            return self._in_flight

    def hold_answers(self):
        """Keep every generation request (arriving or waiting) unanswered until :meth:`release_answers`."""
        with self._flight:
            self._held = True

    def release_answers(self):
        """Answer the held generation requests (and answer new ones at once)."""
        with self._flight:
            self._held = False
            self._flight.notify_all()

    def wait_in_flight(self, n, timeout=120.0):
        """Wait until at least ``n`` generation requests are in flight; whether they were."""
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight >= n, timeout)

    def wait_answered(self, timeout=120.0):
        """Wait until no generation request is in flight (each answered request is logged); whether none was."""
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight == 0, timeout)

    def stats(self):
        """A summary of the request log: counts of calls, 200s (``ok``), 429s (``status_429``; ``limited`` of them
        from the rate limiter), ``paid`` / ``good_paid`` calls, ``faulted`` (a fault behaviour was used), plus
        ``by_status`` ({status or None for a reset: n}) and ``by_behavior`` ({kind or None: n})."""
        calls = self.calls
        by_status = collections.Counter(call["status"] for call in calls)
        return {
            "calls": len(calls),
            "ok": by_status[200],
            "status_429": by_status[429],
            "limited": sum(1 for call in calls if call.get("limited")),
            "paid": sum(1 for call in calls if call["paid"]),
            "good_paid": sum(1 for call in calls if call["paid"] and call["behavior"] in GOOD),
            "faulted": sum(1 for call in calls if call["behavior"] is not None and call["behavior"] not in GOOD),
            "by_status": dict(by_status),
            "by_behavior": dict(collections.Counter(call["behavior"] for call in calls)),
        }

    def hold(self):
        """Requests arriving from now on stay in flight, unanswered (and recorded only once answered), until
        :meth:`release`: a run that is surely still working, with no timing to guess."""
        self._open.clear()

    def release(self):
        self._open.set()

    def held(self):
        """How many requests hold() is keeping in flight now."""
        with self._lock:
            return self._held_count

    def reset(self):
        """Clear the request logs, live and batch (behaviours, files and batches stay; see clear_behaviors)."""
        with self._lock:
            self._calls.clear()
            self._reset_batch_log()

    # -- behaviours -------------------------------------------------------------------------------------------

    @property
    def default_behavior(self):
        return self._default

    @default_behavior.setter
    def default_behavior(self, value):
        self._default = _behavior(value)

    def set_behavior(self, prompt_substring, behavior):
        """Answer prompts containing ``prompt_substring`` with ``behavior`` (a kind name or a Behavior)."""
        with self._lock:
            self._overrides.append((prompt_substring, _behavior(behavior)))

    def fail_times(self, prompt_substring, behavior, n):
        """The next ``n`` matching requests get ``behavior``; later ones fall through to the other rules."""
        with self._lock:
            self._fail_times.append([prompt_substring, _behavior(behavior), int(n)])

    def fail_nth(self, n, behavior):
        """The ``n``-th request (1: the next) a behaviour is chosen for from now, whatever its prompt, gets
        ``behavior``; it goes before every other rule.  Counted: generations, edits, /v1/responses calls and batch
        lines; not counted: requests refused before any behaviour applies (key, validation, the limiter's 429s).
        With concurrent clients, which job's call that is is up to them: the count is exact."""
        if int(n) < 1:
            raise ValueError(f"n counts from 1 (the next request), not {n!r}")
        with self._lock:
            self._fail_nth.append([int(n), _behavior(behavior)])

    def set_fault_mix(self, rate=0.3, kinds=None, seed=0, exclude=()):
        """Fault a random share of the requests no ``fail_times`` / ``set_behavior`` rule matched.

        Each such request gets, with probability ``rate``, a kind drawn uniformly from ``kinds`` (default: every
        ``TRANSIENT`` kind; name others, e.g. ``kinds=TRANSIENT + MORE_TRANSIENT`` or ``"bad_retry_after"``), else
        the default behaviour ("ok" unless changed).  Prompts containing any of the ``exclude`` substrings are never
        faulted (and draw nothing).  The draws come from ``random.Random(seed)`` in arrival order, so sequential
        requests get the same faults on every run; concurrent ones may not.  Calling it again restarts the
        generator; ``clear_behaviors()`` removes the mix."""
        kinds = tuple(TRANSIENT if kinds is None else (kinds,) if isinstance(kinds, str) else kinds)
        if not kinds:
            raise ValueError("set_fault_mix needs at least one kind")
        for kind in kinds:
            Behavior(kind)  # validates
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {rate!r}")
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        with self._lock:
            self._mix = _FaultMix(float(rate), kinds, exclude, random.Random(seed))

    def clear_behaviors(self):
        with self._lock:
            self._overrides.clear()
            self._fail_times.clear()
            self._fail_nth.clear()
            self._default = Behavior()
            self._mix = None

    def _pick(self, prompt):
        """(Behavior, rule) for ``prompt``; rule is "fail_nth", "fail_times", "override", "mix" or "default"."""
        with self._lock:  # consuming a fail_times slot or a random draw must be atomic across threads
            due = None
            for rule in self._fail_nth:
                rule[0] -= 1
                if rule[0] == 0 and due is None:
                    due = rule[1]
            self._fail_nth = [rule for rule in self._fail_nth if rule[0] > 0]
            if due is not None:
                return due, "fail_nth"
            for rule in self._fail_times:
                if rule[2] > 0 and rule[0] in prompt:
                    rule[2] -= 1
                    return rule[1], "fail_times"
            for substring, behavior in self._overrides:
                if substring in prompt:
                    return behavior, "override"
            mix = self._mix
            if mix is not None and not any(substring in prompt for substring in mix.exclude):
                # Always draw both numbers: which requests fault depends on seed and rate only, not on kinds.
                roll, kind = mix.rng.random(), mix.rng.choice(mix.kinds)
                if roll < mix.rate:
                    return Behavior(kind), "mix"
            return self._default, "default"

    # -- rate limiter -------------------------------------------------------------------------------------------

    def set_rate_limit(self, per_minute, window=60.0, unit="requests", per_minute_headers=False):
        """Allow at most ``per_minute`` requests (``unit="requests"``) or images (``unit="images"``: a request for
        ``n`` images uses ``n``) answered with status 200 per sliding ``window`` seconds (None: no limit).

        A generation request that does not fit gets 429 ``rate_limit_exceeded`` with ``retry-after-ms`` /
        ``retry-after`` = the time until enough of the window frees; every generation answer then carries
        ``x-ratelimit-{limit,remaining,reset}-<unit>`` headers describing the limiter (reset as a duration, e.g.
        "1s", "250ms", "1m30s").  Requests answered with an error use up nothing.  Shrink ``window`` in tests that
        want to wait for a slot; with ``per_minute_headers`` the limit header states the limit per minute, as the
        real API's does (``per_minute`` x 60 / ``window``), so a client pacing by it keeps to the short window."""
        if per_minute is not None and int(per_minute) < 1:
            raise ValueError(f"per_minute must be at least 1, not {per_minute!r}")
        if float(window) <= 0:
            raise ValueError(f"window must be positive, not {window!r}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        with self._lock:
            self._limit = None if per_minute is None else int(per_minute)
            self._window = float(window)
            self._unit = unit
            self._per_minute_headers = bool(per_minute_headers)

    def _take_slot(self, images=1):
        """(slot, headers) for a request of ``images`` images: slot is None when the limiter says no (then headers
        hold the 429's extras, and "_used" the units in use), False when there is no limiter, else (time, units)
        reserved (hand it to _release_slot if the answer is no 200)."""
        with self._lock:
            if self._limit is None:
                return False, {}
            cost = images if self._unit == "images" else 1
            now = time.monotonic()
            self._expire(now)
            if len(self._slots) + cost > self._limit:
                # Wait until enough units expire (all of them when one request asks for more than the limit).
                expiring = min(len(self._slots), len(self._slots) + cost - self._limit) - 1
                wait = max(0.001, self._slots[max(expiring, 0)] + self._window - now) if self._slots else self._window
                headers = self._limit_headers(now)
                headers["retry-after-ms"] = str(math.ceil(wait * 1000))
                headers["retry-after"] = str(math.ceil(wait))
                headers["_used"] = len(self._slots)
                return None, headers
            self._slots.extend([now] * cost)
            return (now, cost), {}

    def _release_slot(self, slot):
        now, cost = slot
        with self._lock:
            for _ in range(cost):
                try:
                    self._slots.remove(now)  # equal times are interchangeable, so removing the first is right
                except ValueError:
                    break  # already expired

    def _expire(self, now):
        while self._slots and self._slots[0] <= now - self._window:
            self._slots.popleft()

    def _limit_headers(self, now=None):
        """The x-ratelimit-*-<unit> headers for the limiter's state (call with the lock held)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        reset = self._slots[-1] + self._window - now if self._slots else 0.0
        unit = self._unit
        stated = self._limit * 60 / self._window if self._per_minute_headers else self._limit
        return {
            f"x-ratelimit-limit-{unit}": str(round(stated)) if float(stated).is_integer() else f"{stated:.2f}",
            f"x-ratelimit-remaining-{unit}": str(max(0, self._limit - len(self._slots))),
            f"x-ratelimit-reset-{unit}": _duration(reset),
        }

    def _limited(self, extra, images):
        """The 429 the limiter answers (``extra``: _take_slot's headers)."""
        used = extra.pop("_used")
        wait = _duration(int(extra["retry-after-ms"]) / 1000)
        if self._unit == "images":
            limit = extra["x-ratelimit-limit-images"]
            window = "1min" if self._window == 60 else _duration(self._window)
            status, body = real.known_error(
                "rate_limit_images",
                org=real.ORGANIZATION,
                limit=limit,
                window=window,
                current=used + images,
                wait=wait,
            )
            return status, body, extra
        limit = extra["x-ratelimit-limit-requests"]
        message = (
            f"Rate limit reached for requests per min (RPM): Limit {limit}, Used {limit}, Requested 1. "
            f"Please try again in {int(extra['retry-after-ms']) / 1000:g}s."
        )
        return 429, error_body(message, "requests", "rate_limit_exceeded"), extra

    # -- request handling ---------------------------------------------------------------------------------------

    def _handle(self, handler, method):
        generation = method == "POST" and handler.path.partition("?")[0] in (GENERATIONS, EDITS, RESPONSES)
        if not generation:
            return self._handle_one(handler, method)
        with self._flight:
            self._in_flight += 1
            self._flight.notify_all()
        try:
            self._handle_one(handler, method)
        finally:
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _handle_one(self, handler, method):
        started = time.monotonic()
        headers = {name.lower(): value for name, value in handler.headers.items()}
        raw = handler.rfile.read(int(headers.get("content-length") or 0))
        # "behavior" stays None only for requests refused before any behaviour applies (auth, validation, bad
        # path, "url" image downloads); "rule" says what chose the behaviour, "limited" marks limiter 429s.
        call = {
            "path": handler.path,
            "method": method,
            "body": None,
            "headers": headers,
            "status": None,
            "time": time.time(),
            "arrived_monotonic": started,
            "behavior": None,
            "rule": None,
            "limited": False,
            "paid": False,
            "request_id": f"req_{uuid.uuid4().hex}",
            "peer": handler.client_address,
        }
        if self.latency:
            time.sleep(self.latency)
        if not self._open.is_set():
            with self._lock:
                self._held_count += 1
            self._open.wait(timeout=600)
            with self._lock:
                self._held_count -= 1
        status, body, extra = self._route(handler, method, raw, call)
        call["answer_headers"] = extra  # the answer's headers (x-request-id and processing time added below)
        call["answered"] = time.time()  # "time" is when the request arrived
        call["answered_monotonic"] = time.monotonic()
        # Record before answering, so a client that has its answer always finds the call logged.
        call["status"] = status
        batch_api = call.get("batch_api", False)  # Files/Batch requests are logged apart and never paid
        call["paid"] = status == 200 and isinstance(body, dict) and call["behavior"] != "truncated" and not batch_api
        with self._lock:
            (self._batch_requests if batch_api else self._calls).append(call)
        if status is None:
            self._drop(handler)  # "reset": no answer at all
            return
        extra["openai-processing-ms"] = str(int((time.monotonic() - started) * 1000))
        extra["x-request-id"] = call["request_id"]
        self._send(handler, status, body, extra, truncate=call["behavior"] == "truncated")

    def _route(self, handler, method, raw, call):
        path, _, query = handler.path.partition("?")
        if path.rstrip("/") in ("/v1/files", "/v1/batches") or path.startswith(("/v1/files/", "/v1/batches/")):
            return self._route_batch(method, path, parse_query(query), raw, call)
        if method == "GET" and path.startswith(FILES):
            with self._lock:
                found = self._files.get(path[len(FILES) :])
            if found:
                return 200, found, {}
        elif method == "POST" and path == GENERATIONS:
            return self._generate(handler, raw, call)
        elif method == "POST" and path == EDITS:
            return self._edit(raw, call)
        elif method == "POST" and path == RESPONSES:
            return self._respond(raw, call)
        return 404, error_body(f"Invalid URL ({method} {path})"), {}

    def _respond(self, raw, call):
        """``POST /v1/responses``: a prompt written from ``input`` (tests.support.openai_models.written_prompt).
        Behaviours set for a substring of the input apply (faults, slow, held answers); the answer is paid."""
        body, refused = self._keyed_json(raw, call)
        if refused:
            return refused
        refusal = real.check_responses(body)
        if refusal is not None:
            return refusal.status, refusal.body, {}
        behavior, call["rule"] = self._pick(body["input"])
        call["behavior"] = behavior.kind
        if behavior.kind in _FAULTS or behavior.kind in _RAW_FAULTS or behavior.kind == "reset":
            return self._answer(body, behavior, call["request_id"])
        if behavior.kind == "slow":
            time.sleep(behavior.delay)
        with self._flight:  # a held answer waits here (the call is billed once it is answered)
            self._flight.wait_for(lambda: not self._held)
        created = self.fixed_created or int(time.time())
        return 200, real.responses_answer(body, "resp_" + call["request_id"][4:], created), {}

    @property
    def paid_text_calls(self):
        """Paid /v1/responses calls (prompts written)."""
        return [call for call in self.paid_calls if call["path"].partition("?")[0] == RESPONSES]

    @property
    def paid_image_calls(self):
        """Paid image calls (everything paid but /v1/responses)."""
        return [call for call in self.paid_calls if call["path"].partition("?")[0] != RESPONSES]

    def _keyed_json(self, raw, call):
        """(body, None) for a JSON request with an accepted key; else (None, the answer the real API
        gives: 401 for the key first, then 400 for the body)."""
        refused = self._check_key(call)
        if refused:
            return None, refused
        return _json_body(raw, call)

    def _check_key(self, call):
        """None if the request's Bearer key is accepted, else the 401 the real API gives."""
        auth = call["headers"].get("authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else key + "***"
            message = f"Incorrect API key provided: {shown}." if key else "You didn't provide an API key."
            return 401, error_body(message, code="invalid_api_key"), {}
        return None

    def _generate(self, handler, raw, call):
        body, refused = self._keyed_json(raw, call)
        if refused:
            return refused
        settings, problem = self._validate(body)
        if problem:
            return problem
        return self._answer_in_turn(body, call, settings)

    def _answer_in_turn(self, body, call, settings):
        """A checked generation or edit: the rate limiter answers first, like the real gateway,
        then the behaviour set for the prompt."""
        slot, extra = self._take_slot(settings.n)
        if slot is None:
            call["behavior"], call["rule"], call["limited"] = "rate_limit", "limiter", True
            return self._limited(extra, settings.n)
        behavior, call["rule"] = self._pick(body["prompt"])
        call["behavior"] = behavior.kind
        status, answer, extra = self._answer(body, behavior, call["request_id"], settings)
        if slot is not False:
            if status != 200:
                self._release_slot(slot)
            with self._lock:
                extra.update(self._limit_headers())
        return status, answer, extra

    def _edit(self, raw, call):
        """``POST /v1/images/edits``: the multipart form parsed (``call["body"]`` its text fields,
        ``call["images"]`` the bytes of each ``image[]`` in order, ``call["mask"]`` the mask's), the
        pictures checked as the real API does, then answered like a generation."""
        refused = self._check_key(call)
        if refused:
            return refused
        fields, files = _multipart(call["headers"].get("content-type", ""), raw)
        if fields is None:
            return 400, error_body("Invalid multipart/form-data body."), {}
        images = files.get("image[]", []) + files.get("image", [])
        call["images"] = [data for _, data in images]
        call["image_names"] = [name for name, _ in images]
        masks = files.get("mask", [])
        call["mask"] = masks[0][1] if masks else None
        body = call["body"] = dict(fields)
        for name in ("n", "output_compression"):
            if name in body:
                try:
                    body[name] = int(body[name])
                except ValueError:
                    pass
        if not images:
            return (
                400,
                error_body("Missing required parameter: 'image'.", param="image", code="missing_required_parameter"),
                {},
            )
        refused = _edit_pictures([data for _, data in images], call["mask"])  # count, types, sizes, mask
        if refused:
            return refused
        body.pop("moderation", None)  # not a parameter of edits: refused below like any unknown one
        if "moderation" in fields:
            return 400, error_body("Unknown parameter: 'moderation'.", param="moderation", code="unknown_parameter"), {}
        settings, problem = self._validate(body)
        if problem:
            return problem
        return self._answer_in_turn(body, call, settings)

    def _answer(self, body, behavior, request_id=None, settings=None):
        """(status, body, headers) of ``behavior`` for an accepted ``body`` (``settings``: what check() made of it;
        None for the Files/Batch faults of fail_next, which have no generation body)."""
        kind = behavior.kind
        model = _field(body, "model", self.default_model)
        if kind == "moderation":
            status, answer = real.moderation_error(request_id or "req_unknown")
            return status, answer, {}
        if kind == "retired_model":  # as if the model had just been shut down: it is no longer among today's
            supported = [name for name in self.current_models if name != model]
            status, answer = real.retired_error(model, self.retired_answer, supported)
            return status, answer, {}
        if kind in _FAULTS:
            status, message, type_, code, extra = _FAULTS[kind]
            extra = dict(extra)
            if behavior.retry_after is not None and "retry-after-ms" in extra:
                wait = behavior.retry_after
                extra.update({"retry-after-ms": str(math.ceil(wait * 1000)), "retry-after": str(math.ceil(wait))})
                message = message.replace("in 50ms.", f"in {_duration(wait)}.")
            return status, error_body(message.replace("{model}", str(model)), type_, code), extra
        if kind in _RAW_FAULTS:
            status, content_type, payload = _RAW_FAULTS[kind]
            return status, (payload, content_type), {}
        if kind == "reset":
            return None, None, {}
        if kind == "slow":
            time.sleep(behavior.delay)
        with self._flight:  # a held answer waits here (the call is billed once it is answered)
            self._flight.wait_for(lambda: not self._held)
        return 200, self._success(body, kind, settings), {}

    def _validate(self, body):
        """(settings, None) if ``body`` is a request the real API takes on ``today``, else (None, (status, body,
        headers)) with the refusal it would give (see tests.support.openai_models.check)."""
        try:
            settings = real.check(body, self.today, self.models, self.default_model, self.retired_answer)
        except Refusal as refusal:
            return None, (refusal.status, refusal.body, {})
        return settings, None

    def _success(self, body, kind, settings):
        prompt, n = body["prompt"], settings.n
        gpt = settings.model.gpt
        fmt = kind if kind in ("jpeg", "webp") else settings.output_format or "png"
        if kind == "not_image":
            items = [{"b64_json": base64.b64encode(b"this is not an image\n").decode()}] * n
        elif kind == "bad_base64":
            items = [{"b64_json": "!!!not-base64"}] * n
        else:
            image = render_image(prompt, fmt, self.render_size or (settings.width, settings.height))
            if kind == "url" or settings.response_format == "url":
                name = f"{hashlib.sha256(prompt.encode()).hexdigest()[:16]}.{fmt}"
                with self._lock:
                    self._files[name] = (image, f"image/{fmt}")
                items = [{"url": f"{self.base_url}/_fake/images/{name}"}] * n
            else:
                items = [{"b64_json": base64.b64encode(image).decode()}] * n
        if settings.model.name == "dall-e-3":
            items = [{**item, "revised_prompt": prompt} for item in items]
        answer = {
            "created": int(time.time()) if self.fixed_created is None else int(self.fixed_created),
            "data": items,
        }
        if gpt:
            answer.update(
                background=settings.background,
                output_format=fmt,
                quality=settings.quality,
                size=settings.size,
                usage=real.usage(settings, prompt, self.usage_shape),
            )
        return answer

    @staticmethod
    def _send(handler, status, body, extra, truncate=False):
        if isinstance(body, tuple):  # raw file bytes for the "url" behaviour
            payload, content_type = body
        else:
            payload, content_type = json.dumps(body).encode("utf-8"), "application/json"
        headers = {
            "content-type": content_type,
            # A truncated answer promises more bytes than it sends, then hangs up mid-body.
            "content-length": str(len(payload) + (1000 if truncate else 0)),
            "openai-version": "2020-10-01",
            "x-ratelimit-limit-requests": "1000000",  # no limiter: a budget no test reaches
            "x-ratelimit-remaining-requests": "999999",
            "x-ratelimit-reset-requests": "1s",
        }
        headers.update((name.lower(), value) for name, value in extra.items())  # replaces, never duplicates
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()
        if truncate:
            handler.close_connection = True

    @staticmethod
    def _drop(handler):
        """Close the connection without a word; SO_LINGER 0 makes the close a TCP reset."""
        handler.close_connection = True
        try:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


def _edit_pictures(images, mask):
    """None if the pictures of an edit request are ones the real API takes, else its (status, body, headers)."""
    if len(images) > EDIT_MAX_IMAGES:
        return (
            400,
            error_body(
                f"Invalid 'image': too many images. Expected at most {EDIT_MAX_IMAGES}, got {len(images)}.",
                param="image",
                code="too_many_images",
            ),
            {},
        )
    sizes = []
    for number, data in enumerate(images, 1):
        found = _picture(data)
        if found is None or found[0] not in ("PNG", "JPEG", "WEBP") or len(data) >= EDIT_MAX_BYTES:
            return (
                400,
                error_body(
                    f"Invalid image file or mode for image {number}, please check your image file.",
                    param="image",
                    code="invalid_image_file",
                ),
                {},
            )
        sizes.append(found[1])
    if mask is not None:
        found = _picture(mask)
        if found is None or found[0] != "PNG" or len(mask) >= MASK_MAX_BYTES:
            message = "Invalid mask image format - mask must be a PNG file under 4 MB."
            return 400, error_body(message, param="mask", code="invalid_image_format"), {}
        if found[1] != sizes[0]:
            message = "Invalid mask image format - mask size does not match image size"
            return 400, error_body(message, param="mask", code="invalid_image_format"), {}
    return None


def edit_json(body):
    """The JSON form of /v1/images/edits (a batch line): (the body without its pictures, [picture bytes], mask
    bytes or None, None) or (..., the refusal). Pictures are ``{"image_url": data URL}`` (``file_id`` is not
    served by this stand-in)."""

    def decode(ref, param):
        url = ref.get("image_url") if isinstance(ref, dict) else None
        if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
            raise ValueError(param)
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)

    rest = {k: v for k, v in body.items() if k not in ("images", "mask")}
    try:
        images = [decode(ref, "images") for ref in body.get("images") or ()]
        mask = decode(body["mask"], "mask") if body.get("mask") is not None else None
    except (ValueError, TypeError) as exc:
        param = str(exc) if str(exc) in ("images", "mask") else "images"
        message = f"Invalid '{param}': expected an image_url with a base64 data URL."
        return rest, [], None, (400, error_body(message, param=param, code="invalid_value"), {})
    if not images:
        message = "Missing required parameter: 'images'."
        return rest, [], mask, (400, error_body(message, param="images", code="missing_required_parameter"), {})
    if "moderation" in rest:
        message = "Unknown parameter: 'moderation'."
        return rest, images, mask, (400, error_body(message, param="moderation", code="unknown_parameter"), {})
    return rest, images, mask, _edit_pictures(images, mask)


def _multipart(content_type, raw):
    """(text fields, {name: [(file name, bytes)]}) of a multipart/form-data body, or (None, None)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.startswith("multipart/form-data"):
        return None, None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        return None, None
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files.setdefault(name, []).append((filename, data))
        else:
            fields[name] = data.decode("utf-8")
    return fields, files


def _picture(data):
    """(Pillow's format, (width, height)) of ``data``, or None when it is not a picture."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format, image.size
            image.verify()
        return found
    except Exception:
        return None


def _field(body, name, default=None):
    """``body[name]``, with JSON null or absence meaning ``default`` (as the API treats optional fields)."""
    value = body.get(name) if isinstance(body, dict) else None
    return default if value is None else value


def _duration(seconds):
    """``seconds`` the way OpenAI's x-ratelimit-reset-* headers write it: "120ms", "1.5s", "1m0s"."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def main(argv=None):
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Serve a fake OpenAI Images API until SIGTERM.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--behavior", default="ok", choices=sorted(BEHAVIORS), help="default behaviour")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests given a transient fault")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault mix")
    parser.add_argument("--rate-limit", type=int, default=None, help="successful generations allowed per minute")
    parser.add_argument("--rate-limit-unit", default="requests", choices=UNITS, help="what the rate limit counts")
    parser.add_argument("--today", type=date.fromisoformat, default=real.TODAY, help="whose models answer (YYYY-MM-DD)")
    args = parser.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with FakeOpenAI(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        latency=args.latency,
        rate_limit_per_minute=args.rate_limit,
        rate_limit_unit=args.rate_limit_unit,
        today=args.today,
    ) as server:
        server.default_behavior = args.behavior
        if args.fault_rate:
            server.set_fault_mix(args.fault_rate, seed=args.fault_seed)
        print(f"READY {server.base_url}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
