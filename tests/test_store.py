import os
import threading
import time

import pytest

from image_batch.images.store import ResponseStore, request_key
from image_batch.providers.base import RawResponse
from tests.conftest import API_KEY, set_env, use_stand_ins


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
    store = open_store({"response_store": "s3://answers/team/store/"})
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

    assert storage_root({}, "s3://bucket/run/") == "s3://bucket/run/response-store"
    assert storage_root({"response_store": "response-store"}, "s3://bucket/run") == "s3://bucket/run/response-store"
    assert storage_root({"response_store": "s3://other/answers"}, "s3://bucket/run") == "s3://other/answers"
    assert storage_root({"response_store": "/mnt/shared/store"}, "s3://bucket/run") == "/mnt/shared/store"
    assert storage_root({}, "gcs://bucket/run") is None


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_jobs_with_the_same_request_pay_once(tmp_path, s3, monkeypatch, where):
    """Two rows with the same description are the same request: jobs making them at once (threads
    here; machines in a cluster) pay for one answer. Local store: flock; S3 store: a lease."""
    from image_batch.images.generate import obtain
    from tests.support.fake_openai import FakeOpenAI

    request = {"provider": "openai", "model": "gpt-image-test", "prompt": "same words", "output_format": "png"}
    with FakeOpenAI(api_key=API_KEY, latency=0.5) as api:
        use_stand_ins(monkeypatch, tmp_path, s3, api)
        config = {
            "openai": {"model": "gpt-image-test"},
            "retry": {"max_attempts": 1},
            "response_store": "s3://answers/store" if where == "s3" else str(tmp_path / "store"),
        }
        results, errors = [], []

        def job():
            try:
                results.append(obtain(dict(request), config, lambda message: None)[1])
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
    assert shared_store({}, "s3://bucket/run") == (
        "s3://bucket/run/response-store",
        "Image.Batch: jobs share no filesystem: paid answers are kept in s3://bucket/run/response-store",
    )
    (tmp_path / "response-store/ab").mkdir(parents=True)
    (tmp_path / "response-store/ab/abc.json").write_text("{}")
    root, note = shared_store({}, "s3://bucket/run")
    assert root == "s3://bucket/run/response-store" and "aws s3 sync response-store/" in note
    assert shared_store({"response_store": "s3://other/answers"}, "s3://bucket/run") == ("s3://other/answers", None)
    root, note = shared_store({}, "gcs://bucket/run")
    assert root == "response-store" and "WARNING" in note and "a retried job pays again" in note
