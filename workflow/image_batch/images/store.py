"""The response store: every successful paid API answer, kept as received, keyed by its request.

Layout (a compatibility contract: users keep stores for years, and every version must serve every
answer an older one stored, so that an upgrade never pays again):

- ``<root>/<key[:2]>/<key>.json``: one answer; ``key`` is the SHA-256 of the canonical JSON of the
  full request (provider, endpoint and its ``base_url``, model, prompt, size, quality, output
  format, background, extra body, variant, ...). Written atomically the moment it arrives, before
  it is decoded or checked, so a crash afterwards loses nothing that was paid for.
- ``<root>/STORE.json``: the store's format (2) and ``unkeyed_endpoint``: the endpoint of the
  answers stored before requests carried their endpoint (format 1, versions before 2026-11-27:
  their key is the request without ``base_url``). Those answers are served for that endpoint only.
  When a run of this version first meets such a store, it records the endpoint of that run (the
  one the earlier version used with the same environment); edit the file if they came from another.
- ``<root>/usage.jsonl``: one line of usage per answer (model, quality, size, tokens): estimates
  use the mean of your own answers.
- ``<root>/rejected/``: answers that turned out unusable, kept for inspection.
- ``<root>/batches/``: batch mode's state (see images.batch).

A per-key lock (flock) makes concurrent jobs with the same request wait for one another instead of
paying twice. A store write that fails is retried; failing that, the answer is kept in a rescue
folder (:data:`RESCUE_ROOTS`) and served from there, never dropped.

With ``response_store: s3://bucket/prefix`` the same entries live in S3 (:class:`S3ResponseStore`),
for jobs with no shared filesystem.
"""

import base64
import datetime
import fcntl
import functools
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from image_batch.common.errors import UserError
from image_batch.common.fileio import HOST, atomic_write_bytes

DEFAULT_ROOT = "response-store"
FORMAT = 2
META_NAME = "STORE.json"
USAGE_NAME = "usage.jsonl"
# An S3 store's per-request lease is taken over after this long without renewal (its holder died).
LEASE_SECONDS = 300
CLOCK_SKEW = 60  # seconds of difference allowed between this machine's clock and S3's
# Where a paid answer goes when the store cannot take it (disk full, S3 down): tried in this order.
# Each is private to the user (created 0700, and used only when it is the user's own folder that
# no one else can write: see rescue_folder_problem); the system temp folder's is per user.
RESCUE_ROOTS = (
    Path("response-store-rescue"),
    Path(tempfile.gettempdir()) / f"image-batch-rescue-{os.getuid()}",
    Path.home() / ".cache" / "image-batch" / "rescue",
)
PUT_ATTEMPTS = 4
ENTRY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.json$")  # an answer's name under the store's root


def store_root(settings):
    """Where the response store lives: config ``response_store`` (default ``response-store``)."""
    return settings.response_store or DEFAULT_ROOT


def is_remote(root):
    return str(root).startswith("s3://")


_stores = {}
_stores_lock = threading.Lock()


def open_store(settings, root=None):
    """The response store the settings name: a local folder, or ``s3://bucket/prefix``. One object
    per store and process (what it learns, such as its format record, is read once)."""
    root = str(root or store_root(settings))
    where = root if is_remote(root) else os.path.abspath(root)
    with _stores_lock:
        if where not in _stores:
            _stores[where] = S3ResponseStore(root) if is_remote(root) else ResponseStore(where)
        return _stores[where]


@functools.cache
def _s3_client(endpoint_url, access_key):
    """One boto3 client per process, endpoint and credentials, not one per image: a client costs
    tens of milliseconds to make (and boto3 clients are thread-safe)."""
    import boto3
    from botocore.config import Config

    # checksums both ways, pinned: snakemake-storage-plugin-s3 turns them off process-wide
    return boto3.session.Session().client(
        "s3",
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 10},
            request_checksum_calculation="when_supported",
            response_checksum_validation="when_supported",
        ),
    )


def storage_root(settings, storage_prefix):
    """The response store for a run whose jobs share no filesystem: the configured one when it is
    in S3 or was set to anything but the default (a volume every job mounts, say); else, with an
    S3 storage prefix, ``<prefix>/response-store``.  None when nothing shared can be chosen."""
    root = store_root(settings)
    if root != DEFAULT_ROOT:
        return root
    if storage_prefix and str(storage_prefix).startswith("s3://"):
        return f"{str(storage_prefix).rstrip('/')}/{DEFAULT_ROOT}"
    return None


def shared_store(settings, storage_prefix):
    """(the response store, what to tell the user) for a run whose jobs share no filesystem: see
    :func:`storage_root`; when none can be chosen, the configured one, with a warning."""
    local_root = store_root(settings)
    remote_root = storage_root(settings, storage_prefix)
    if remote_root is None:
        return local_root, (
            "Image.Batch: WARNING: jobs share no filesystem and the response store is local to "
            "each job: a retried job pays again. Set response_store: s3://bucket/prefix."
        )
    if remote_root == local_root:
        return remote_root, None
    note = f"Image.Batch: jobs share no filesystem: paid answers are kept in {remote_root}"
    if any(Path(local_root).glob("??/*.json")):
        note += (
            f". The answers already in {local_root}/ are not seen by this run: copy them there first "
            f"(aws s3 sync {local_root}/ {remote_root}/ --exclude 'batches/*') or they may be paid again"
        )
    return remote_root, note


# ---------------------------------------------------------------------------------------------
# Keys and entries


def entry_name(key):
    """Where an answer lives under a store's root (or a rescue folder): ``<key[:2]>/<key>.json``."""
    return f"{key[:2]}/{key}.json"


def request_key(request):
    """The store key of ``request``: SHA-256 of its canonical JSON (format 2: endpoint included)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def unkeyed_request(request):
    """``request`` as versions before format 2 keyed it: without its endpoint (``base_url``)."""
    return {k: v for k, v in request.items() if k != "base_url"}


def _entry_bytes(key, request, raw, origin):
    entry = {
        "key": key,
        "format": FORMAT,
        "origin": origin,  # "live" or "batch": what the answer cost (the batch price is lower)
        "request": request,
        "received_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "status": raw.status,
        "headers": raw.headers,
    }
    try:
        entry["body"] = raw.body.decode("utf-8")
    except UnicodeDecodeError:
        entry["body_b64"] = base64.b64encode(raw.body).decode("ascii")
    if raw.attachment is not None:
        entry["attachment_b64"] = base64.b64encode(raw.attachment).decode("ascii")
    return json.dumps(entry, ensure_ascii=False).encode("utf-8")


def _entry_from_bytes(data):
    entry = json.loads(data)
    if not isinstance(entry, dict) or ("body" not in entry and "body_b64" not in entry):
        raise ValueError("not a store entry")
    entry["body"] = base64.b64decode(entry.pop("body_b64")) if "body_b64" in entry else entry["body"].encode()
    if entry.get("attachment_b64"):
        entry["attachment"] = base64.b64decode(entry.pop("attachment_b64"))
    return entry


def answer_usage(body):
    """The ``usage`` object of an images answer, read from its tail (an answer is megabytes of base64
    with the usage at the end: no need to parse it all), or None."""
    if not isinstance(body, (bytes, bytearray)):
        return None
    at = body.rfind(b'"usage"')
    if at < 0:
        return _gemini_usage(body)
    try:
        text = body[at:].decode("utf-8")
        start = text.index("{")
        usage, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, UnicodeDecodeError):
        return None
    return usage if isinstance(usage, dict) else None


def _gemini_usage(body):
    """A Gemini answer's ``usageMetadata`` (also near its end), in the shape above, or None; None
    too for an answer with no image (a refusal is an HTTP 200 there): it says nothing of an image's
    cost, and would pull the estimates down."""
    at = body.rfind(b'"usageMetadata"')
    if at < 0:
        return None
    try:
        text = body[at:].decode("utf-8")
        metadata, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    except (ValueError, UnicodeDecodeError):
        return None
    from image_batch.default_plugins.gemini import usage_of  # (the provider's own reading of it)

    usage = usage_of(metadata)
    return usage if usage and usage["output_tokens_details"]["image_tokens"] else None


def usage_line(request, usage):
    """One line of the usage journal: what an answer for ``request`` used."""
    usage = usage or {}
    details_in = usage.get("input_tokens_details") or {}
    details_out = usage.get("output_tokens_details") or {}
    line = {
        "model": request.get("model"),
        "quality": request.get("quality"),
        "size": request.get("size") or request.get("image_size"),  # (Gemini names it image_size)
        "input_tokens": usage.get("input_tokens"),
        "text_input_tokens": details_in.get("text_tokens"),
        "image_input_tokens": details_in.get("image_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "image_output_tokens": details_out.get("image_tokens"),
        "text_output_tokens": details_out.get("text_tokens"),
    }
    return json.dumps(line, sort_keys=True) + "\n"


_rescue_seen = [0.0, ()]
# Refused rescue folders are named once a run: the processes a run starts (the image worker) inherit
# the list from the environment of the process that read the Snakefile.
WARNED_VARIABLE = "IMAGE_BATCH_RESCUE_WARNED"


def rescue_folder_problem(path):
    """Why ``path`` cannot be trusted as a rescue folder (None: it can): an answer found there is
    served with no call and moved into the private store, so it must be a real folder (not a
    symbolic link) of the current user that no one else can write. ``path`` must exist."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != os.getuid():
        return f"it belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & 0o022:
        return f"others can write to it (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _warn_rescue(path, problem, what="rescue folder"):
    """One line per refused rescue folder or entry (once per run)."""
    warned = os.environ.get(WARNED_VARIABLE, "").split("\n")
    if str(path) in warned:
        return
    os.environ[WARNED_VARIABLE] = "\n".join([*filter(None, warned), str(path)])
    fix = "remove it, or make it yours and private: chmod 700" if what == "rescue folder" else "remove it"
    print(
        f"Image.Batch: WARNING: {what} {path} skipped: {problem}; nothing in it is served or written ({fix})",
        file=sys.stderr,
        flush=True,
    )


def _trusted(path):
    """Whether the existing folder ``path`` is a rescue folder to use (warns once when not)."""
    try:
        problem = rescue_folder_problem(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem:
        _warn_rescue(path, problem)
    return problem is None


def _private_folder(path):
    """``path`` as a rescue folder to write to: made 0700 when missing; OSError when it cannot be
    trusted (see :func:`rescue_folder_problem`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    problem = rescue_folder_problem(path)
    if problem:
        _warn_rescue(path, problem)
        raise OSError(f"not used: {problem}")


def _rescue_roots(every=5.0):
    """The rescue folders that exist and can be trusted (looked at once every few seconds, not once
    per image)."""
    now = time.monotonic()
    if now - _rescue_seen[0] > every:
        _rescue_seen[:] = [now, tuple(root for root in RESCUE_ROOTS if _trusted(root))]
    return _rescue_seen[1]


def _read_rescued(root, key):
    """The bytes of ``key``'s answer in the rescue folder ``root``, or None: only a regular file (no
    symbolic link followed) of the current user, in a shard folder that can be trusted."""
    shard = root / key[:2]
    try:
        problem = rescue_folder_problem(shard)
        if problem:
            _warn_rescue(shard, problem)
            return None
        with open(os.open(shard / f"{key}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                return handle.read()
    except OSError:  # missing, or a symbolic link (ELOOP)
        return None
    _warn_rescue(shard / f"{key}.json", "it is not a regular file of yours", "rescued answer")
    return None


def _has_rescued(root, key):
    try:
        info = os.lstat(root / entry_name(key))
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()


class Found:
    """A stored answer found for a request: ``entry`` (dict), where it was (``key``, ``legacy``:
    found under the key of format 1, ``rescued``: found in a rescue folder)."""

    def __init__(self, key, entry, legacy=False, rescued=None, batch_keys=frozenset()):
        self.key, self.entry, self.legacy, self.rescued = key, entry, legacy, rescued
        self._batch_keys = batch_keys

    @property
    def origin(self):
        """ "batch" or "live": what the answer was bought at. Entries of format 1 do not say; those
        that batch mode collected are the ones its record (batches/state.json) lists."""
        if self.entry.get("origin"):
            return self.entry["origin"]
        # (a live answer carries the API's processing time header; a batch line's answer does not)
        live_headers = "openai-processing-ms" in (self.entry.get("headers") or {})
        return "batch" if self.key in self._batch_keys and not live_headers else "live"


# ---------------------------------------------------------------------------------------------
# The store, with what local and S3 stores share


class _Store:
    """Look-ups that know the store's format history and the rescue folders."""

    _meta = None

    def has_many(self):
        """``has`` for many keys (planning's estimate): a store that knows a faster way says so."""
        return self.has

    def meta(self):
        """STORE.json as a dict ({} when the store has none yet)."""
        if self._meta is None:
            data = self._read_meta()
            if data is None:
                return {}
            self._meta = data
        return self._meta

    def unkeyed_endpoint(self, current=None):
        """The endpoint that format-1 answers (stored without their endpoint) belong to: the one
        STORE.json names; with no STORE.json yet and such answers present, ``current`` (the endpoint
        of this run, which the run records before its first call); None when there are none."""
        meta = self.meta()
        if meta:
            return meta.get("unkeyed_endpoint")
        return current if self._has_format_1() else None

    def _has_format_1(self):
        """Whether a store without STORE.json holds anything of format 1: answers, or batch mode's
        record of batches (a batch still running when the earlier version stopped lists old keys)."""
        return self.has_entries() or (Path(self.state_dir) / "batches" / "state.json").exists()

    def adopt(self, endpoint):
        """Write STORE.json (format 2) if missing: format-1 answers already here belong to
        ``endpoint``. Returns a note for the user when there were such answers, else None."""
        if self.meta():
            return None
        legacy = self._has_format_1()
        self._write_meta(
            {
                "format": FORMAT,
                "unkeyed_endpoint": endpoint if legacy else None,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "note": "unkeyed_endpoint: the endpoint of answers stored before requests carried their "
                "endpoint (Image.Batch before 2026-11-27); they are served for that endpoint only",
            }
        )
        self._meta = None
        if legacy:
            return (
                f"response store {self.describe()}: answers stored by earlier versions are taken as answers of "
                f"{endpoint} (recorded in {META_NAME}; edit it if they came from another endpoint)"
            )
        return None

    def lookup(self, request, current_endpoint=None):
        """The stored answer for ``request`` (a :class:`Found`), or None: under its own key; for a
        request to the endpoint of format-1 answers, under its format-1 key; in a rescue folder."""
        key = request_key(request)
        entry = self.get(key)
        if entry is not None:
            return Found(key, entry, batch_keys=self._legacy_batch_keys(entry))
        if "base_url" in request and request["base_url"] == self.unkeyed_endpoint(current_endpoint):
            old = request_key(unkeyed_request(request))
            entry = self.get(old)
            if entry is not None:
                return Found(old, entry, legacy=True, batch_keys=self._legacy_batch_keys(entry))
        for root in _rescue_roots():
            data = _read_rescued(root, key)
            if data is not None:
                try:
                    return Found(key, _entry_from_bytes(data), rescued=root / entry_name(key))
                except ValueError:
                    continue
        return None

    def _legacy_batch_keys(self, entry):
        """The keys batch mode collected, for entries that do not record their origin (format 1)."""
        if entry.get("origin"):
            return frozenset()
        if getattr(self, "_batch_key_cache", None) is None:
            path = Path(self.state_dir) / "batches" / "state.json"
            try:
                batches = json.loads(path.read_text(encoding="utf-8")).get("batches") or []
                self._batch_key_cache = frozenset(k for b in batches if b.get("collected") for k in b.get("keys") or ())
            except (OSError, ValueError, AttributeError):
                self._batch_key_cache = frozenset()
        return self._batch_key_cache

    def has_answer(self, request, current_endpoint=None):
        """Whether a stored answer would serve ``request`` (cheap: no entry is read): under its key,
        its format-1 key (for the endpoint of format-1 answers), or in a rescue folder."""
        return self.answer_check(current_endpoint, many=False)(request)

    def answer_check(self, current_endpoint=None, many=True):
        """has_answer for many requests (planning's estimate): STORE.json is read once, when first
        needed, and (``many``) what the store holds is looked up as the store does best for many
        keys (``has_many``)."""
        known = []
        has = self.has_many() if many else self.has

        def unkeyed_endpoint():
            if not known:
                known.append(self.unkeyed_endpoint(current_endpoint))
            return known[0]

        def has_answer(request):
            key = request_key(request)
            if has(key):
                return True
            unkeyed = "base_url" in request and request["base_url"] == unkeyed_endpoint()
            if unkeyed and has(request_key(unkeyed_request(request))):
                return True
            return any(_has_rescued(root, key) for root in _rescue_roots())

        return has_answer

    def keep(self, key, request, raw, origin="live", log=print, journal=True):
        """Store a paid answer: retried on failure; failing that, kept in a rescue folder with one
        clear message. Returns where it went (None: the store). ``journal``: note its usage (once
        per answer: not again when the same answer is stored again with its downloaded image)."""
        data = _entry_bytes(key, request, raw, origin)
        error = None
        for attempt in range(PUT_ATTEMPTS):
            try:
                self._put_bytes(key, data)
                break
            except Exception as exc:  # disk full, S3 down after botocore's own retries, ...
                error = exc
                time.sleep(min(0.2 * 2**attempt, 2.0))
        else:
            return self._rescue(key, data, error, log)
        if journal:
            try:
                self.note_usage(request, raw)
            except Exception:  # the journal only feeds estimates: never fail a paid answer for it
                pass
        return None

    def _rescue(self, key, data, error, log):
        problems = [f"{self.describe()}: {error}"]
        for root in RESCUE_ROOTS:
            path = root / entry_name(key)
            try:
                _private_folder(root)
                _private_folder(path.parent)
                atomic_write_bytes(path, data, private=True)
            except OSError as exc:
                problems.append(f"{root}: {exc.strerror or exc}")
                continue
            message = (
                f"the response store could not keep a paid answer ({error}); it is kept in {path} and will be "
                "served from there (copy it into the store when the store works again)"
            )
            _rescue_seen[0] = 0.0  # look again: there is one now
            log(f"WARNING: {message}")
            # one write: image jobs run side by side, and print() writes the line and its end apart
            sys.stderr.write(f"Image.Batch: WARNING: {message}\n")
            sys.stderr.flush()
            return path
        raise UserError(
            "a paid answer could not be kept anywhere: " + "; ".join(problems) + ". Free some space and run again."
        )

    def note_usage(self, request, raw):
        usage = answer_usage(raw.body)
        if usage:
            self._append_usage(usage_line(request, usage))

    def usage_means(self):
        """{(model, quality, size): {"n": answers, "<field>": mean, ...}} from the usage journal."""
        sums = {}
        for line in self._usage_lines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            group = sums.setdefault((row.get("model"), row.get("quality"), row.get("size")), {"n": 0})
            group["n"] += 1
            for name, value in row.items():
                if name.endswith("_tokens") and isinstance(value, (int, float)):
                    group[name] = group.get(name, 0) + value
                    group[f"{name}#n"] = group.get(f"{name}#n", 0) + 1
        means = {}
        for group_key, group in sums.items():
            mean = {"n": group["n"]}
            for name, value in group.items():
                if name.endswith("_tokens"):
                    mean[name] = value / group[f"{name}#n"]
            means[group_key] = mean
        return means


class ResponseStore(_Store):
    def __init__(self, root):
        self.root = Path(root)

    def describe(self):
        return str(self.root)

    def preflight(self, write=False):
        """Raise UserError, naming the fix, when the store cannot be used: ``response_store`` is a
        file; with ``write`` (a real run, before its first call), its folder (or the folder it will
        be made in) is not writable. Looks only: nothing is created."""
        from image_batch.common.errors import _shown

        name = _shown(self.root)
        place = self.root
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            what = "is a file" if place == self.root else f"is inside {_shown(place)}, which is a file"
            raise UserError(
                f"response_store {name} {what}, not a folder: point response_store at a folder (the default is "
                "response-store) or move the file away, then run again"
            )
        if write and not os.access(place, os.W_OK | os.X_OK):
            top = _shown(place)
            raise UserError(
                f"the response store {name}: {top} is not writable by the user running the workflow (uid "
                f"{os.getuid()}; made by another user, or by a container run as root?): paid answers could not be "
                f'kept. Make it yours (sudo chown -R "$(id -u):$(id -g)" {top}) or run as its owner, then run again'
            )

    def path(self, key):
        return self.root / entry_name(key)

    @contextmanager
    def lock(self, key):
        path = self.root / key[:2] / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, key):
        """The stored entry for ``key`` or None.  Entries carry ``body`` (bytes) and ``headers``."""
        try:
            return _entry_from_bytes(self.path(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # not readable: never "not there" (that would pay again)
            raise UserError(f"the response store cannot be read ({exc}): fix its permissions and run again") from None
        except (ValueError, UnicodeDecodeError):
            self.reject(key, "unreadable store entry (not a complete JSON answer)")
            return None

    def has(self, key):
        return self.path(key).exists()

    def has_many(self):
        """``has`` for many keys (planning's estimate, every start): each shard's folder is listed
        once, when first asked, instead of a stat per key (at 100,000 rows, at most 256 listings
        against 100,000 stats). A snapshot, as the stats were: planning only estimates."""
        shards = {}
        root = str(self.root)

        def has(key):
            names = shards.get(key[:2])
            if names is None:
                try:
                    names = set(os.listdir(os.path.join(root, key[:2])))
                except (FileNotFoundError, NotADirectoryError):
                    names = set()
                shards[key[:2]] = names
            return f"{key}.json" in names

        return has

    def has_entries(self):
        """Whether any answer is stored (stops at the first)."""
        if not self.root.is_dir():
            return False
        for shard in self.root.iterdir():
            if (
                len(shard.name) == 2
                and shard.is_dir()
                and any(ENTRY.match(f"{shard.name}/{p.name}") for p in shard.iterdir())
            ):
                return True
        return False

    def put(self, key, request, raw, origin="live"):
        """Keep ``raw`` (a providers.RawResponse) for ``request``: atomically, right away."""
        self._put_bytes(key, _entry_bytes(key, request, raw, origin))

    def _put_bytes(self, key, data):
        atomic_write_bytes(self.path(key), data, private=True)

    def _read_meta(self):
        path = self.root / META_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is not readable ({exc}): fix or delete it (it names the store's format)") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} is not a JSON object: fix or delete it")
        return data

    def _write_meta(self, data):
        atomic_write_bytes(self.root / META_NAME, (json.dumps(data, indent=1) + "\n").encode("utf-8"), private=True)

    def _append_usage(self, line):
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / USAGE_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def _usage_lines(self):
        try:
            with open(self.root / USAGE_NAME, encoding="utf-8") as handle:
                yield from handle
        except FileNotFoundError:
            return

    @property
    def state_dir(self):
        """Where batch mode keeps its state (see batch.BatchState)."""
        return self.root

    def reject(self, key, reason):
        """Move an unusable entry aside (kept for inspection), so the next look-up misses."""
        source = self.path(key)
        if not source.exists():
            return
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.root / "rejected" / f"{key}-{stamp}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        (target.with_suffix(".reason.txt")).write_text(reason + "\n", encoding="utf-8")


class S3ResponseStore(_Store):
    """The response store in S3 (``s3://bucket/prefix``): the same entries under the same keys,
    through boto3's standard credential chain (AWS_ENDPOINT_URL honoured).  A PUT is atomic, so an
    entry is whole or absent; the per-request lock is a lease object (see :meth:`lock`)."""

    def __init__(self, url):
        bucket, _, prefix = str(url)[len("s3://") :].partition("/")
        self.url = str(url)
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        env = os.environ
        self.client = _s3_client(
            env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"), env.get("AWS_ACCESS_KEY_ID")
        )
        self._listed = None

    def describe(self):
        return self.url

    def preflight(self, write=False):
        """Raise UserError, naming the fix, when the bucket cannot be reached: no credentials, no such
        bucket, access refused, endpoint unreachable. One HEAD request, nothing written."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"the response store {self.url}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise UserError(
                f"{where}: no AWS credentials are set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                "AWS_PROFILE) in the environment or .env, or set response_store to a folder, then run again"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise UserError(
                    f"{where}: the bucket {self.bucket!r} does not exist: create it (aws s3 mb s3://{self.bucket}) "
                    "or set response_store to an existing bucket, then run again"
                ) from None
            if code in ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise UserError(
                    f"{where}: access to bucket {self.bucket!r} is refused ({code}): check the AWS credentials "
                    "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket's policy, then run again"
                ) from None
            raise UserError(f"{where}: S3 answered {code or exc}: check the bucket and credentials") from None
        except BotoCoreError as exc:
            raise UserError(
                f"{where}: S3 cannot be reached ({exc}): check the network and AWS_ENDPOINT_URL, then run again"
            ) from None

    def object_key(self, key):
        return f"{self.prefix}{entry_name(key)}"

    # -- the lease ----------------------------------------------------------------------------------

    @contextmanager
    def lock(self, key, stale_after=LEASE_SECONDS, poll=1.0):
        """A lease per request, so that two jobs with the same request (two rows with the same
        description) on different machines do not both pay. Every change of the lease object is a
        conditional write: it is created with ``If-None-Match: *`` (only one job can win), renewed
        by its holder every ``stale_after / 4`` seconds with ``If-Match`` on its own ETag, taken
        over when not renewed for ``stale_after`` seconds (its holder died) with ``If-Match`` on
        the stale ETag (of two jobs that both see it stale, only one wins), and released with a
        conditional delete. The others wait until the answer is stored (they are then served it)
        or the lease is free. Stores without conditional writes get no lease."""
        lease = f"{self.prefix}leases/{key}"
        etag, seen = None, None  # seen: (the lease's ETag, since when we see it unchanged)
        while etag is None:
            etag, supported = self._try_lease(lease, None)
            if not supported or etag is not None:
                break
            if self._exists(self.object_key(key)):
                break  # the holder stored the answer: get() will find it
            head = self._head(lease)
            if head is not None:
                if seen is None or seen[0] != head["ETag"]:
                    seen = (head["ETag"], time.monotonic())
                # stale: not renewed for stale_after by our own clock, or by S3's (with room for skew)
                age = (datetime.datetime.now(datetime.UTC) - head["LastModified"]).total_seconds()
                if time.monotonic() - seen[1] > stale_after or age > stale_after + CLOCK_SKEW:
                    etag, _ = self._try_lease(lease, head["ETag"])  # only one of the waiters wins
                    if etag is not None:
                        break
            time.sleep(poll)
        holder = _LeaseRenewer(self, lease, etag, stale_after / 4) if etag else None
        try:
            yield holder  # its .lost says another job took the request over (we were taken for dead)
        finally:
            if holder is not None:
                holder.release()

    def _try_lease(self, lease, replace_etag):
        """(ETag of the lease we now hold or None, whether the store takes conditional writes)."""
        from botocore.exceptions import ClientError

        body = f"{HOST} {os.getpid()} {time.time():.6f}".encode()
        condition = {"IfMatch": replace_etag} if replace_etag else {"IfNoneMatch": "*"}
        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=lease, Body=body, **condition)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NotImplemented", "501"):
                return None, False
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey", "404"):
                return None, True
            raise
        return answer["ETag"], True

    def _head(self, object_key):
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _exists(self, object_key):
        return self._head(object_key) is not None

    # -- entries ------------------------------------------------------------------------------------

    def get(self, key):
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            return _entry_from_bytes(data)
        except (ValueError, UnicodeDecodeError):
            self.reject(key, "unreadable store entry (not a complete JSON answer)")
            return None

    def _list(self):
        if self._listed is None:
            self._listed = set()
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    if ENTRY.match(name):
                        self._listed.add(name[3 : -len(".json")])
        return self._listed

    def has(self, key):
        """Whether an entry exists; the store is listed once, then kept up to date by this object."""
        return key in self._list()

    def has_entries(self):
        return bool(self._list())

    def put(self, key, request, raw, origin="live"):
        self._put_bytes(key, _entry_bytes(key, request, raw, origin))

    def _put_bytes(self, key, data):
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        if self._listed is not None:
            self._listed.add(key)

    def _read_meta(self):
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}{META_NAME}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            meta = json.loads(data)
        except ValueError as exc:
            raise UserError(f"{self.url}/{META_NAME} is not readable ({exc}): fix or delete it") from None
        if not isinstance(meta, dict):
            raise UserError(f"{self.url}/{META_NAME} is not a JSON object: fix or delete it")
        return meta

    def _write_meta(self, data):
        body = (json.dumps(data, indent=1) + "\n").encode("utf-8")
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}{META_NAME}", Body=body)

    def _append_usage(self, line):
        """S3 has no append: one small object per answer under usage/ (read back by usage_means)."""
        name = hashlib.sha256(line.encode("utf-8")).hexdigest()[:16]
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}usage/{stamp}-{name}.json", Body=line.encode())

    def _usage_lines(self):
        """Usage objects are not read back from S3 (one GET each): estimates use the catalogue."""
        return iter(())

    def reject(self, key, reason):
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = f"{self.prefix}rejected/{key}-{stamp}"
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=f"{target}.json",
                CopySource={"Bucket": self.bucket, "Key": self.object_key(key)},
            )
        except self.client.exceptions.ClientError:
            return
        self.client.put_object(Bucket=self.bucket, Key=f"{target}.reason.txt", Body=(reason + "\n").encode())
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        if self._listed is not None:
            self._listed.discard(key)

    @property
    def state_dir(self):
        """Batch mode's state stays on the machine that runs Snakemake's main process, in the
        local store's usual place (outside results/, which may be deleted at no cost)."""
        return Path(DEFAULT_ROOT)


class _LeaseRenewer:
    """Keeps an S3 lease fresh while it is held (a thread re-PUTs it with If-Match on its ETag), and
    releases it with a conditional delete. A lease lost to another job (its renewal refused) is
    noted, never overwritten."""

    def __init__(self, store, lease, etag, every):
        self.store, self.lease, self.etag, self.every = store, lease, etag, max(every, 0.05)
        self.lost = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="s3-lease", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.every):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    etag, _ = self.store._try_lease(self.lease, self.etag)
                except Exception:  # S3 unreachable for a moment: try again at the next tick
                    continue
                if etag is None:  # refused (412): another job took the lease over
                    self.lost = True
                    return
                self.etag = etag

    def release(self):
        from botocore.exceptions import ClientError

        self._stop.set()
        with self._lock:
            if self.lost:
                return
            try:
                self.store.client.delete_object(Bucket=self.store.bucket, Key=self.lease, IfMatch=self.etag)
            except ClientError:
                pass  # already taken over or gone: not ours to delete
        self._thread.join(timeout=5)
