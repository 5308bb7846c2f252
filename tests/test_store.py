import json
import os
import threading
import time

import pytest

from image_batch.images.store import ResponseStore, request_key
from image_batch.providers import RawResponse
from tests.conftest import API_KEY, set_env, settings_for, use_stand_ins


def test_key_is_order_independent_and_covers_every_field():
    a = {"provider": "openai", "model": "m", "prompt": "p", "size": "1024x1024"}
    assert request_key(a) == request_key(dict(reversed(list(a.items()))))
    for field, value in [("prompt", "q"), ("model", "n"), ("size", "512x512"), ("variant", "2"), ("quality", "low")]:
        assert request_key({**a, field: value}) != request_key(a)


def test_put_get_reject(tmp_path):
    store = ResponseStore(tmp_path)
    key = request_key({"prompt": "p"})
    assert store.get(key) is None
    store.put(key, {"prompt": "p"}, RawResponse(body=b'{"data": []}', headers={"x-request-id": "req_1"}))
    entry = store.get(key)
    assert entry["body"] == b'{"data": []}' and entry["headers"]["x-request-id"] == "req_1"
    store.put(key, {"prompt": "p"}, RawResponse(body=b"\xff\xfe binary", attachment=b"\x89PNG"))
    entry = store.get(key)
    assert entry["body"] == b"\xff\xfe binary" and entry["attachment"] == b"\x89PNG"
    assert not list(tmp_path.rglob("*.part"))
    store.reject(key, "bad")
    assert store.get(key) is None
    assert len(list((tmp_path / "rejected").glob("*.json"))) == 1


def test_lock_serialises_the_same_request(tmp_path):
    store = ResponseStore(tmp_path)
    inside, overlaps = [], []

    def worker():
        with store.lock("ab" * 32):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    import subprocess

    from image_batch.common.fileio import HOST, remove_stale_parts

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "ab").mkdir()
    stale = tmp_path / "ab" / f".x.json.{HOST}.{dead.pid}.abc.part"
    live = tmp_path / "ab" / f".y.json.{HOST}.{os.getpid()}.abc.part"
    elsewhere = tmp_path / "ab" / f".z.json.other-container.{dead.pid}.abc.part"
    for path in (stale, live, elsewhere):
        path.write_text("half")
    assert remove_stale_parts(tmp_path, min_age=600) == 1
    assert not stale.exists() and live.exists() and elsewhere.exists()  # another host's pid is unknowable
    os.utime(elsewhere, (1, 1))  # abandoned long ago
    assert remove_stale_parts(tmp_path, min_age=600) == 1 and not elsewhere.exists()
    assert remove_stale_parts(tmp_path, only_dead_writers=False) == 1 and not live.exists()


def test_s3_store_keeps_the_same_entries_in_a_bucket(s3, monkeypatch):
    """response_store: s3://bucket/prefix, against moto's server: put, get, has, reject."""
    from image_batch.images.store import S3ResponseStore, open_store

    set_env(monkeypatch, s3.env())
    s3.client().create_bucket(Bucket="answers")
    store = open_store(settings_for(response_store="s3://answers/team/store/"))
    assert isinstance(store, S3ResponseStore)
    key, other = request_key({"prompt": "p"}), request_key({"prompt": "q"})
    assert store.get(key) is None and not store.has(key)
    store.put(
        key,
        {"prompt": "p"},
        RawResponse(body=b"\xff\xfe binary", headers={"x-request-id": "req_1"}, attachment=b"\x89PNG"),
    )
    entry = store.get(key)
    assert entry["body"] == b"\xff\xfe binary" and entry["attachment"] == b"\x89PNG"
    assert entry["headers"]["x-request-id"] == "req_1" and entry["request"] == {"prompt": "p"}
    assert set(s3.objects("answers")) == {f"team/store/{key[:2]}/{key}.json"}
    # a fresh store (another job, another machine) lists once and sees it
    fresh = S3ResponseStore("s3://answers/team/store")
    assert fresh.has(key) and not fresh.has(other)
    fresh.put(other, {"prompt": "q"}, RawResponse(body=b"{}"))
    assert fresh.has(other)
    assert S3ResponseStore("s3://answers/team/store").get(other)["body"] == b"{}"
    store.reject(key, "bad answer")
    assert store.get(key) is None and not store.has(key)
    rejected = [k for k in s3.objects("answers") if k.startswith("team/store/rejected/")]
    assert len(rejected) == 2 and any(k.endswith(".reason.txt") for k in rejected)


def test_corrupt_s3_entry_is_set_aside_not_trusted(s3, monkeypatch):
    from image_batch.images.store import S3ResponseStore

    set_env(monkeypatch, s3.env())
    client = s3.client()
    client.create_bucket(Bucket="answers")
    key = request_key({"prompt": "p"})
    client.put_object(Bucket="answers", Key=f"{key[:2]}/{key}.json", Body=b'{"key": "trunc')
    store = S3ResponseStore("s3://answers")
    assert store.get(key) is None
    assert [k for k in s3.objects("answers") if not k.startswith("rejected/")] == []


def test_storage_root_puts_the_store_where_every_job_sees_it():
    from image_batch.images.store import storage_root

    def at(root):
        return settings_for(response_store=root)

    assert storage_root(settings_for(), "s3://bucket/run/") == "s3://bucket/run/response-store"
    assert storage_root(at("response-store"), "s3://bucket/run") == "s3://bucket/run/response-store"
    assert storage_root(at("s3://other/answers"), "s3://bucket/run") == "s3://other/answers"
    assert storage_root(at("/mnt/shared/store"), "s3://bucket/run") == "/mnt/shared/store"
    assert storage_root(settings_for(), "gcs://bucket/run") is None


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_jobs_with_the_same_request_pay_once(tmp_path, s3, monkeypatch, where):
    """Two rows with the same description are the same request: jobs making them at once (threads
    here; machines in a cluster) pay for one answer. Local store: flock; S3 store: a lease."""
    from image_batch.images.generate import obtain
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key=API_KEY, latency=0.5) as api:
        request = {"provider": "openai", "base_url": api.base_url, "model": "gpt-image-2.5-sunburst"}
        request.update(prompt="same words", output_format="png")
        use_stand_ins(monkeypatch, tmp_path, s3, api)
        config = settings_for(
            retry={"max_attempts": 1},
            response_store="s3://answers/store" if where == "s3" else str(tmp_path / "store"),
        )
        results, errors = [], []

        def job():
            try:
                results.append(obtain(dict(request), config, lambda message: None).png)
            except Exception as exc:  # collected, and the test fails on it below
                errors.append(exc)

        threads = [threading.Thread(target=job) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(results) == 2 and results[0] == results[1]
        assert len(api.paid_calls) == 1
    if where == "s3":
        assert not [key for key in s3.objects("answers") if "/leases/" in key]  # released


def test_shared_store_says_what_it_chose(tmp_path, monkeypatch):
    from image_batch.images.store import shared_store

    monkeypatch.chdir(tmp_path)
    assert shared_store(settings_for(), "s3://bucket/run") == (
        "s3://bucket/run/response-store",
        "Image.Batch: jobs share no filesystem: paid answers are kept in s3://bucket/run/response-store",
    )
    (tmp_path / "response-store/ab").mkdir(parents=True)
    (tmp_path / "response-store/ab/abc.json").write_text("{}")
    root, note = shared_store(settings_for(), "s3://bucket/run")
    assert root == "s3://bucket/run/response-store" and "aws s3 sync response-store/" in note
    assert shared_store(settings_for(response_store="s3://other/answers"), "s3://bucket/run") == (
        "s3://other/answers",
        None,
    )
    root, note = shared_store(settings_for(), "gcs://bucket/run")
    assert root == "response-store" and "WARNING" in note and "a retried job pays again" in note


# -- format history: answers stored before requests carried their endpoint ---------------------

OLD = {"provider": "openai", "endpoint": "images/generations", "model": "m", "prompt": "p", "size": "1024x1024"}


def new_request(base_url):
    return {**OLD, "base_url": base_url}


def legacy_store(tmp_path):
    """A store as versions before 2026-11-27 left it: keyed by the request without its endpoint."""
    from image_batch.images.store import unkeyed_request

    store = ResponseStore(tmp_path / "store")
    old_key = request_key(unkeyed_request(new_request("http://a/v1")))
    assert old_key == request_key(OLD)
    data = {"key": old_key, "request": OLD, "status": 200, "headers": {"openai-processing-ms": "5"}, "body": "{}"}
    (tmp_path / "store" / old_key[:2]).mkdir(parents=True)
    (tmp_path / "store" / old_key[:2] / f"{old_key}.json").write_text(json.dumps(data))
    return store


def test_old_answers_are_served_for_the_endpoint_the_store_records_only(tmp_path):
    store = legacy_store(tmp_path)
    # before any run of this version: they belong to the endpoint in use (what the run will record)
    assert store.has_answer(new_request("http://a/v1"), "http://a/v1")
    note = store.adopt("http://a/v1")
    assert "http://a/v1" in note and "STORE.json" in note
    assert json.loads((tmp_path / "store" / "STORE.json").read_text())["unkeyed_endpoint"] == "http://a/v1"
    fresh = ResponseStore(tmp_path / "store")
    found = fresh.lookup(new_request("http://a/v1"))
    assert found is not None and found.legacy and found.origin == "live"
    # never for another endpoint, whatever that run's endpoint is
    assert fresh.lookup(new_request("https://api.openai.com/v1"), "https://api.openai.com/v1") is None
    assert not fresh.has_answer(new_request("http://b/v1"), "http://b/v1")
    assert fresh.adopt("http://b/v1") is None  # recorded once, never moved by a later run


def test_many_look_ups_list_each_shard_once_and_agree_with_one_by_one(tmp_path, monkeypatch):
    """Planning's estimate asks about every row (answer_check): a listing per shard, not a stat
    per key, with the same answers as has_answer, also for answers of the earlier key format."""
    store = legacy_store(tmp_path)
    stored = [{"prompt": f"p{i}", "model": "m"} for i in range(40)]
    for request in stored:
        store.put(request_key(request), request, RawResponse(body=b"{}"))
    asked = stored + [{"prompt": f"q{i}", "model": "m"} for i in range(40)]
    asked += [new_request("http://a/v1"), new_request("http://b/v1")]
    one_by_one = [store.has_answer(request, "http://a/v1") for request in asked]
    assert one_by_one == [True] * 40 + [False] * 40 + [True, False]
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or real(path))
    check = store.answer_check("http://a/v1")
    assert [check(request) for request in asked] == one_by_one
    assert len(listed) == len(set(listed)) <= 256  # each shard once, when first asked
    # a shard that is a file (not the store's doing) holds nothing, as for has()
    lone = {"prompt": "alone", "model": "m"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / request_key(lone)[:2]).write_text("not a folder")
    assert not ResponseStore(tmp_path / "other").answer_check()(lone)


def test_a_new_store_records_no_unkeyed_endpoint(tmp_path):
    store = ResponseStore(tmp_path / "store")
    assert store.adopt("http://a/v1") is None
    assert json.loads((tmp_path / "store" / "STORE.json").read_text())["unkeyed_endpoint"] is None


def test_a_broken_store_record_is_a_clear_error(tmp_path):
    from image_batch.common.errors import UserError

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "STORE.json").write_text("{not json")
    with pytest.raises(UserError, match="STORE.json is not readable"):
        ResponseStore(tmp_path / "store").unkeyed_endpoint("http://a/v1")


def test_old_batch_answers_keep_their_batch_price(tmp_path):
    store = legacy_store(tmp_path)
    key = request_key(OLD)
    entry = json.loads((tmp_path / "store" / key[:2] / f"{key}.json").read_text())
    entry["headers"] = {"x-request-id": "req_b"}  # a batch line's answer, as the old version stored it
    (tmp_path / "store" / key[:2] / f"{key}.json").write_text(json.dumps(entry))
    (tmp_path / "store" / "batches").mkdir()
    state = {"batches": [{"id": "batch_1", "keys": [key], "collected": True, "status": "completed"}]}
    (tmp_path / "store" / "batches" / "state.json").write_text(json.dumps(state))
    store.adopt("http://a/v1")
    assert ResponseStore(tmp_path / "store").lookup(new_request("http://a/v1")).origin == "batch"


def test_a_store_write_that_fails_keeps_the_answer_in_a_rescue_folder(tmp_path, monkeypatch):
    from image_batch.images import store as store_module

    monkeypatch.chdir(tmp_path)
    rescue = tmp_path / "rescue"
    monkeypatch.setattr(store_module, "RESCUE_ROOTS", (rescue,))
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    store = ResponseStore(tmp_path / "store")

    def disk_full(key, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_put_bytes", disk_full)
    request = new_request("http://a/v1")
    key = request_key(request)
    said = []
    where = store.keep(key, request, RawResponse(body=b'{"data": [1]}'), "live", said.append)
    assert where == rescue / key[:2] / f"{key}.json" and where.exists()
    assert "kept in" in said[0] and str(where) in said[0]
    found = store.lookup(request)
    assert found.rescued == where and found.entry["body"] == b'{"data": [1]}'


def test_usage_journal_gives_the_mean_of_your_own_answers(tmp_path):
    store = ResponseStore(tmp_path / "store")
    request = new_request("http://a/v1") | {"quality": "high"}
    for tokens in (1000, 2000):
        body = json.dumps({"usage": {"input_tokens": 10, "output_tokens": tokens}}).encode()
        store.keep(request_key({**request, "prompt": str(tokens)}), request, RawResponse(body=body))
    means = store.usage_means()
    assert means[("m", "high", "1024x1024")]["n"] == 2
    assert means[("m", "high", "1024x1024")]["output_tokens"] == 1500


def test_files_of_the_store_are_private(tmp_path):
    store = ResponseStore(tmp_path / "store")
    key = request_key(OLD)
    store.put(key, OLD, RawResponse(body=b"{}"))
    assert store.path(key).stat().st_mode & 0o077 == 0


# -- the S3 lease: conditional writes only, renewed while held ---------------------------------


def test_s3_lease_is_renewed_while_held_and_taken_over_only_when_stale(s3, monkeypatch):
    from image_batch.images.store import S3ResponseStore

    set_env(monkeypatch, s3.env())
    s3.client().create_bucket(Bucket="answers")
    store = S3ResponseStore("s3://answers/store")
    key = request_key(OLD)
    lease = f"store/leases/{key}"
    with store.lock(key, stale_after=0.4):
        first = s3.client().head_object(Bucket="answers", Key=lease)["ETag"]
        time.sleep(0.5)  # renewed every stale_after / 4: never stale while held
        second = s3.client().head_object(Bucket="answers", Key=lease)["ETag"]
        assert first != second
        # a second job waiting on the same request does not take it over while it is renewed
        waited = []

        def other():
            with S3ResponseStore("s3://answers/store").lock(key, stale_after=0.4, poll=0.05):
                waited.append(time.monotonic())

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.6)
        assert waited == []
    thread.join(timeout=10)
    assert waited and not [k for k in s3.objects("answers") if "leases/" in k]


def test_a_stale_s3_lease_goes_to_one_waiter_only(s3, monkeypatch):
    from image_batch.images.store import S3ResponseStore

    set_env(monkeypatch, s3.env())
    client = s3.client()
    client.create_bucket(Bucket="answers")
    key = request_key(OLD)
    lease = f"store/leases/{key}"
    client.put_object(Bucket="answers", Key=lease, Body=b"a holder that died")
    stale = client.head_object(Bucket="answers", Key=lease)["ETag"]
    store = S3ResponseStore("s3://answers/store")
    # two waiters see the same stale ETag: the conditional write lets exactly one win
    first, _ = store._try_lease(lease, stale)
    second, _ = store._try_lease(lease, stale)
    assert first is not None and second is None


def test_a_renewal_that_meets_a_network_error_keeps_the_lease(s3, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from image_batch.images.store import S3ResponseStore

    set_env(monkeypatch, s3.env())
    s3.client().create_bucket(Bucket="answers")
    store = S3ResponseStore("s3://answers/store")
    key = request_key(OLD)
    real, calls = store._try_lease, []

    def flaky(lease, etag):
        calls.append(etag)
        if etag is not None and len(calls) == 2:  # the first renewal meets one network error
            raise EndpointConnectionError(endpoint_url="http://s3")
        return real(lease, etag)

    store._try_lease = flaky
    took_over = []

    def other():
        with S3ResponseStore("s3://answers/store").lock(key, stale_after=0.4, poll=0.05):
            took_over.append(time.monotonic())

    with store.lock(key, stale_after=0.4) as held:
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(1.5)  # the holder is still working: renewed after the error, never stale
        assert not took_over and not held.lost
    thread.join(timeout=10)
    assert took_over


def test_a_rescue_folder_or_answer_behind_a_symbolic_link_is_not_served(tmp_path, monkeypatch, capsys):
    """lstat, no symbolic link followed: a rescue folder that is a link, and an answer that is a
    link (to a file of anyone's), are skipped, each with one line."""
    from image_batch.images import store as store_module

    monkeypatch.setenv(store_module.WARNED_VARIABLE, "")
    request = new_request("http://a/v1")
    key = request_key(request)
    real = tmp_path / "real"
    (real / key[:2]).mkdir(parents=True, mode=0o700)
    real.chmod(0o700)
    entry = store_module._entry_bytes(key, request, RawResponse(body=b'{"data": [1]}'), "live")
    (real / key[:2] / f"{key}.json").write_bytes(entry)
    (tmp_path / "linked").symlink_to(real)
    monkeypatch.setattr(store_module, "_rescue_seen", [0.0, ()])
    monkeypatch.setattr(store_module, "RESCUE_ROOTS", (tmp_path / "linked",))
    store = ResponseStore(tmp_path / "store")
    assert store.lookup(request) is None and not store.has_answer(request)
    assert "linked skipped: it is a symbolic link" in capsys.readouterr().err

    (tmp_path / "outside.json").write_bytes(entry)
    (real / key[:2] / f"{key}.json").unlink()
    (real / key[:2] / f"{key}.json").symlink_to(tmp_path / "outside.json")
    monkeypatch.setattr(store_module, "_rescue_seen", [0.0, ()])
    monkeypatch.setattr(store_module, "RESCUE_ROOTS", (real,))
    assert store.lookup(request) is None and not store.has_answer(request)
    (real / key[:2] / f"{key}.json").unlink()
    (real / key[:2] / f"{key}.json").write_bytes(entry)  # the same answer as a file of ours: served
    assert store.lookup(request).rescued == real / key[:2] / f"{key}.json" and store.has_answer(request)


def test_a_temp_file_whose_pid_was_used_again_is_a_dead_writers(tmp_path):
    """A busy machine goes through its 32,768 pids quickly: a temp file is a dead writer's when the
    process that has its pid now started after the file was last written."""
    import os

    from image_batch.common import fileio

    name = f".answer.json.{fileio.HOST}.{os.getpid()}.abc123.part"
    part = tmp_path / name
    part.write_bytes(b"half")
    assert fileio._writer_alive(name, part) is True  # this very process: alive, and it may be writing
    state, started = fileio._process(os.getpid())
    assert state in ("R", "S")
    assert started is not None and started <= part.stat().st_mtime + 2
    os.utime(part, (started - 100, started - 100))  # written before this process began: not its writer
    assert fileio._writer_alive(name, part) is False
    assert fileio.remove_stale_parts(tmp_path) == 1 and not part.exists()


def test_a_temp_file_whose_writer_is_a_zombie_is_a_dead_writers(tmp_path):
    """A worker killed with its parent stays a zombie for good where the container's first process
    does not reap orphans (CI's does not): its pid answers signals, but it writes nothing any more."""
    import os
    import subprocess
    import time

    from image_batch.common import fileio

    child = subprocess.Popen(["sleep", "30"])
    try:
        name = f".answer.json.{fileio.HOST}.{child.pid}.abc123.part"
        part = tmp_path / name
        part.write_bytes(b"half")
        assert fileio._writer_alive(name, part) is True
        child.kill()
        for _ in range(200):  # not reaped: a zombie until wait()
            if fileio._process(child.pid)[0] == "Z":
                break
            time.sleep(0.01)
        os.kill(child.pid, 0)  # a zombie still answers signal 0
        assert fileio._writer_alive(name, part) is False
        assert fileio.remove_stale_parts(tmp_path) == 1 and not part.exists()
    finally:
        child.kill()
        child.wait()
