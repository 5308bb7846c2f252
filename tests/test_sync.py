"""The sync diff and both targets; S3 through boto3 against moto's server on loopback."""

import json
import os

import pytest

from image_batch.common.settings import Destination
from image_batch.sync.upload import LocalFile, S3Target, SyncError, collect, plan, same_content, sync
from tests.conftest import set_env


def make_images(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sorted(str(root / rel) for rel in files)


FILES = {"nature/a.png": b"PNG-a", "nature/a.json": b'{"a": 1}', "food-beverage/b.png": b"PNG-b"}


def test_plan_compares_content_not_just_size(tmp_path):
    paths = make_images(tmp_path / "images", FILES)
    files = collect(paths, tmp_path / "images", "p/")
    assert sorted(f.key for f in files) == ["p/food-beverage/b.png", "p/nature/a.json", "p/nature/a.png"]
    remote = {f.key: {"size": f.size, "etag": f'"{f.md5}"'} for f in files}
    assert plan(files, remote) == ([], files)
    remote["p/nature/a.png"]["etag"] = '"00000000000000000000000000000000"'  # same size, other bytes
    del remote["p/food-beverage/b.png"]
    to_upload, unchanged = plan(files, remote)
    assert sorted(f.key for f in to_upload) == ["p/food-beverage/b.png", "p/nature/a.png"]


def test_multipart_etag_is_recomputed(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * 10 + b"y" * 10)
    item = LocalFile("k", str(path), 20, "unused", "unused")
    import hashlib

    parts = [hashlib.md5(b"x" * 10).digest(), hashlib.md5(b"y" * 10).digest()]
    etag = f'"{hashlib.md5(b"".join(parts)).hexdigest()}-2"'
    assert same_content(item, {"size": 20, "etag": etag}, part_size=10)
    assert not same_content(item, {"size": 20, "etag": etag}, part_size=20)


def test_local_destination(tmp_path):
    images = tmp_path / "images"
    paths = make_images(images, FILES)
    dest = Destination("local", str(tmp_path / "bucket"), "run/")
    marker = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images)
    assert marker["counts"] == {"objects": 3, "images": 2, "sidecars": 1, "uploaded": 3, "unchanged": 0}
    for rel, data in FILES.items():
        assert (tmp_path / "bucket" / "run" / rel).read_bytes() == data
    remote_marker = json.loads((tmp_path / "bucket" / "run" / "_SUCCESS.json").read_text())
    assert [o["key"] for o in remote_marker["objects"]] == sorted("run/" + k for k in FILES)
    assert json.loads((tmp_path / "_SUCCESS.json").read_text())["objects"] == remote_marker["objects"]

    (images / "nature/a.png").write_bytes(b"PNG-A")  # same size, new bytes
    marker = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images)
    assert marker["counts"]["uploaded"] == 1
    assert (tmp_path / "bucket/run/nature/a.png").read_bytes() == b"PNG-A"


@pytest.fixture
def bucket(s3, monkeypatch):
    set_env(monkeypatch, s3.env())
    s3.client().create_bucket(Bucket="images")
    return "images"


def test_s3_first_sync_then_noop(tmp_path, s3, bucket):
    images = tmp_path / "images"
    paths = make_images(images, FILES)
    dest = Destination("s3", bucket, "batch/", s3.endpoint_url)
    target = S3Target(bucket)
    marker = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images, target=target)
    assert marker["counts"]["uploaded"] == 3
    stored = s3.objects(bucket)
    for rel, data in FILES.items():
        assert stored[f"batch/{rel}"] == data
    bucket_marker = json.loads(stored["batch/_SUCCESS.json"])
    assert {o["key"] for o in bucket_marker["objects"]} == {f"batch/{k}" for k in FILES}
    head = s3.client().head_object(Bucket=bucket, Key="batch/nature/a.png")
    assert head["ContentType"] == "image/png"

    again = S3Target(bucket)
    marker = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images, target=again)
    assert marker["counts"]["uploaded"] == 0
    assert again.listings == 1


def test_s3_changed_file_is_reuploaded_and_marker_refreshed(tmp_path, s3, bucket):
    images = tmp_path / "images"
    paths = make_images(images, FILES)
    dest = Destination("s3", bucket, "", s3.endpoint_url)
    sync(paths, dest, tmp_path / "m.json", images_root=images)
    (images / "food-beverage/b.png").write_bytes(b"PNG-B")
    marker = sync(paths, dest, tmp_path / "m.json", images_root=images)
    assert marker["counts"]["uploaded"] == 1
    stored = s3.objects(bucket)
    assert stored["food-beverage/b.png"] == b"PNG-B"
    sha = {o["key"]: o["sha256"] for o in json.loads(stored["_SUCCESS.json"])["objects"]}
    import hashlib

    assert sha["food-beverage/b.png"] == hashlib.sha256(b"PNG-B").hexdigest()


def test_s3_failure_leaves_no_marker(tmp_path, s3, bucket, monkeypatch):
    images = tmp_path / "images"
    paths = make_images(images, FILES)
    dest = Destination("s3", bucket, "", s3.endpoint_url)
    sync(paths, dest, tmp_path / "m.json", images_root=images)
    (images / "nature/a.png").write_bytes(b"PNG-changed")
    os.unlink(tmp_path / "m.json")
    target = S3Target(bucket)

    def broken_upload(files):
        raise ConnectionError("network down")

    monkeypatch.setattr(target, "upload", broken_upload)
    with pytest.raises(SyncError, match="No marker was written"):
        sync(paths, dest, tmp_path / "m.json", images_root=images, target=target)
    assert "_SUCCESS.json" not in s3.objects(bucket)
    assert not (tmp_path / "m.json").exists()


def test_s3_bucket_whose_etags_are_not_md5s(tmp_path, s3, bucket, monkeypatch):
    """SSE-KMS buckets (and some S3-compatible stores) give ETags that are not the MD5 of the bytes
    (here: a loopback proxy in front of moto rewrites every ETag). The first sync is verified by
    the SHA-256 S3 computed on upload; a resync uploads nothing and lists once; a changed file is
    uploaded again."""
    from tests.support.flaky_proxy import FlakyProxy

    images = tmp_path / "images"
    paths = make_images(images, FILES)
    with FlakyProxy(s3.endpoint_url, opaque_etags=True) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        dest = Destination("s3", bucket, "kms/", proxy.url)
        listed = S3Target(bucket).list("")
        first = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images, target=S3Target(bucket))
        assert first["counts"]["uploaded"] == 3 and listed == {}
        etags = {o["key"]: o["etag"] for o in first["objects"]}
        assert all(etags[o["key"]] != o["md5"] for o in first["objects"])  # opaque indeed
        assert proxy.count(method="HEAD") == 3  # each upload verified by its checksum

        again = S3Target(bucket)
        marker = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images, target=again)
        assert marker["counts"]["uploaded"] == 0 and again.listings == 1

        (images / "nature/a.png").write_bytes(b"PNG-A, drawn again")
        changed = sync(paths, dest, tmp_path / "_SUCCESS.json", images_root=images, target=S3Target(bucket))
        assert changed["counts"]["uploaded"] == 1
    assert s3.objects(bucket)["kms/nature/a.png"] == b"PNG-A, drawn again"


def test_removed_rows_are_only_this_sheets_own_and_unchanged():
    """Which leftovers a sheet may delete: its own ledger records them with the ETag and size they
    still have, and no other sheet asks for them."""
    from image_batch.sync.upload import read_ledger, removed_keys

    listing = {
        "p/pets/mine.png": {"size": 5, "etag": '"aaa"'},  # ours, unchanged
        "p/pets/edited.png": {"size": 5, "etag": '"new"'},  # ours, replaced since
        "p/pets/shared.png": {"size": 5, "etag": '"sss"'},  # ours, but the cats sheet asks for it
        "p/pets/cat.png": {"size": 5, "etag": '"ccc"'},  # the cats sheet's
        "p/pets/stray.png": {"size": 5, "etag": '"xxx"'},  # no ledger knows it
        "p/pets/wanted.png": {"size": 5, "etag": '"www"'},  # a row asks for it
        "p/_SUCCESS.json": {"size": 5, "etag": '"m"'},
        "p/_image-batch/sheets/0123456789abcdef.json": {"size": 5, "etag": '"l"'},
    }
    owned = {
        "p/pets/mine.png": {"size": 5, "etag": "aaa"},
        "p/pets/edited.png": {"size": 5, "etag": "old"},
        "p/pets/shared.png": {"size": 5, "etag": "sss"},
        "p/pets/gone.png": {"size": 5, "etag": "ggg"},  # deleted by someone: nothing to do
    }
    files = [LocalFile("p/pets/wanted.png", "/dev/null", 5, "www", "s")]
    others = {"/home/u/cats.csv": {"p/pets/shared.png", "p/pets/cat.png"}}
    removed, changed, foreign = removed_keys(listing, files, "p/", "p/_SUCCESS.json", owned, others)
    assert removed == ["p/pets/mine.png"]
    assert changed == ["p/pets/edited.png"]
    assert foreign == {
        "p/pets/cat.png": "/home/u/cats.csv",
        "p/pets/shared.png": "/home/u/cats.csv",
        "p/pets/stray.png": "",
    }
    listing["p/pets/mine.png"]["size"] = 6  # same ETag, another size: not what we wrote
    assert removed_keys(listing, files, "p/", "p/_SUCCESS.json", owned, others)[0] == []

    assert read_ledger(b"not json") is None and read_ledger(b'{"objects": {"k": {"etag": 1}}}') is None
    assert read_ledger(b'{"sheet": "/s.csv", "objects": {"k": {"etag": "e", "size": 1}}}')["sheet"] == "/s.csv"
