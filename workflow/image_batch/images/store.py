"""The response store: every successful paid API answer, kept as received, keyed by its request.

``<root>/<key[:2]>/<key>.json`` where ``key`` is the SHA-256 of the canonical JSON of the full
request (provider, endpoint, model, prompt, size, quality, output format, background, extra body,
variant). An answer is written atomically the moment it arrives, before it is decoded or checked,
so a crash afterwards loses nothing that was paid for. Every generation looks here first. It lives
outside results/ (config ``response_store``), so ``rm -rf results`` costs nothing to redo.

A per-key lock (flock) makes concurrent jobs with the same request wait for one another instead of
paying twice. Answers that turn out unusable are moved to ``<root>/rejected/``.

With ``response_store: s3://bucket/prefix`` the same entries live in S3 (:class:`S3ResponseStore`):
for jobs with no shared filesystem (the S3 storage plugin, Kubernetes, AWS Batch), where a local
store would die with each job and a retried job would pay again. A run with ``--default-storage-
provider s3`` and no shared filesystem puts it under the storage prefix unless told otherwise.
"""

import base64
import datetime
import fcntl
import functools
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from image_batch.common.fileio import HOST, atomic_write_bytes

DEFAULT_ROOT = "response-store"
# An S3 store's per-request lease is taken over after this long: longer than one image's retries.
LEASE_SECONDS = 1800


def store_root(config):
    """Where the response store lives: config ``response_store``, else ``response-store``."""
    return config.get("response_store") or DEFAULT_ROOT


def is_remote(root):
    return str(root).startswith("s3://")


def open_store(config):
    """The response store the config names: a local folder, or ``s3://bucket/prefix``."""
    root = store_root(config)
    return S3ResponseStore(root) if is_remote(root) else ResponseStore(root)


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


def storage_root(config, storage_prefix):
    """The response store for a run whose jobs share no filesystem: the configured one when it is
    in S3 or was set to anything but the default (a volume every job mounts, say); else, with an
    S3 storage prefix, ``<prefix>/response-store``.  None when nothing shared can be chosen."""
    root = store_root(config)
    if root != DEFAULT_ROOT:
        return root
    if storage_prefix and str(storage_prefix).startswith("s3://"):
        return f"{str(storage_prefix).rstrip('/')}/{DEFAULT_ROOT}"
    return None


def shared_store(config, storage_prefix):
    """(the response store, what to tell the user) for a run whose jobs share no filesystem: see
    :func:`storage_root`; when none can be chosen, the configured one, with a warning."""
    local_root = store_root(config)
    remote_root = storage_root(config, storage_prefix)
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


def _entry_bytes(key, request, raw):
    entry = {
        "key": key,
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
    entry["body"] = base64.b64decode(entry.pop("body_b64")) if "body_b64" in entry else entry["body"].encode()
    if entry.get("attachment_b64"):
        entry["attachment"] = base64.b64decode(entry.pop("attachment_b64"))
    return entry


def request_key(request):
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseStore:
    def __init__(self, root):
        self.root = Path(root)

    def path(self, key):
        return self.root / key[:2] / f"{key}.json"

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
        except FileNotFoundError:
            return None
        except ValueError:
            self.reject(key, "unreadable store entry")
            return None

    def has(self, key):
        return self.path(key).exists()

    def put(self, key, request, raw):
        """Keep ``raw`` (a providers.RawResponse) for ``request``: atomically, right away."""
        atomic_write_bytes(self.path(key), _entry_bytes(key, request, raw))

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


class S3ResponseStore:
    """The response store in S3 (``s3://bucket/prefix``): the same entries under the same keys,
    through boto3's standard credential chain (AWS_ENDPOINT_URL honoured).  A PUT is atomic, so an
    entry is whole or absent; the per-request lock is a lease object (see :meth:`lock`)."""

    def __init__(self, url):
        bucket, _, prefix = str(url)[len("s3://") :].partition("/")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        env = os.environ
        self.client = _s3_client(
            env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"), env.get("AWS_ACCESS_KEY_ID")
        )
        self._listed = None

    def object_key(self, key):
        return f"{self.prefix}{key[:2]}/{key}.json"

    @contextmanager
    def lock(self, key, stale_after=LEASE_SECONDS, poll=1.0):
        """A lease per request, so that two jobs with the same request (two rows with the same
        description) on different machines do not both pay: a conditional PUT (If-None-Match: *)
        of ``leases/<key>`` that only one can win. The others wait until the answer is stored (they
        are then served it), the lease is gone, or it is older than ``stale_after`` seconds (its
        holder died). Stores without conditional writes get no lease."""
        from botocore.exceptions import ClientError

        lease = f"{self.prefix}leases/{key}"
        held = False
        while True:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=lease, Body=f"{HOST} {os.getpid()}".encode(), IfNoneMatch="*"
                )
                held = True
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("NotImplemented", "501"):
                    break
                if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    raise
            if self._exists(self.object_key(key)):
                break  # the holder stored the answer: get() will find it
            age = self._age(lease)
            if age is not None and age > stale_after:
                self.client.delete_object(Bucket=self.bucket, Key=lease)
                continue
            time.sleep(poll)
        try:
            yield
        finally:
            if held:
                self.client.delete_object(Bucket=self.bucket, Key=lease)

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

    def _age(self, object_key):
        head = self._head(object_key)
        if head is None:
            return None
        return (datetime.datetime.now(datetime.UTC) - head["LastModified"]).total_seconds()

    def get(self, key):
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        try:
            return _entry_from_bytes(data)
        except ValueError:
            self.reject(key, "unreadable store entry")
            return None

    def has(self, key):
        """Whether an entry exists; the store is listed once, then kept up to date by this object."""
        if self._listed is None:
            self._listed = set()
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix) :]
                    if "/" in name and not name.startswith("rejected/") and name.endswith(".json"):
                        self._listed.add(name.rsplit("/", 1)[1][: -len(".json")])
        return key in self._listed

    def put(self, key, request, raw):
        self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=_entry_bytes(key, request, raw))
        if self._listed is not None:
            self._listed.add(key)

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
