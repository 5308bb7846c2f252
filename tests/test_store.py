import os
import threading
import time

from image_batch.providers.base import RawResponse
from image_batch.store import ResponseStore, request_key


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

    from image_batch.fileio import HOST, remove_stale_parts

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
