"""The sync's chunks are the sheet's pages (image_batch.sync.chunks, image_batch.common.pages)."""

import hashlib
import json
import os

from image_batch.common.pages import paginate
from image_batch.sync import chunks


def test_a_chunk_is_a_page_of_its_context_in_sheet_order():
    images = [("nature", f"n{i}") for i in range(150)] + [("food", "cake")] + [("nature", "late")]
    assigned = chunks.assign(paginate(images))
    assert list(assigned) == ["nature", "nature_page2", "food"]
    assert assigned["nature"] == [("nature", f"n{i}") for i in range(100)]
    assert assigned["nature_page2"] == [("nature", f"n{i}") for i in range(100, 150)] + [("nature", "late")]
    assert assigned["food"] == [("food", "cake")]
    # the contact sheets' pages: the digest of a page is what its sheet takes
    assert {name: [(p.folder, i) for i in p.image_ids] for name, p in paginate(images).items()} == assigned
    assert chunks.assign(paginate([])) == {}


def test_digests_belong_to_their_input_sheet():
    assert chunks.digest_path("input-1a2b3c4d", "nature_page2").as_posix() == (
        "results/sync/chunks/input-1a2b3c4d/nature_page2.json"
    )
    assert chunks.digest_path("a-1", "nature") != chunks.digest_path("b-2", "nature")


def test_missing_behind_names_the_missing_pngs_of_digested_pages_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assigned = chunks.assign(paginate([("nature", "fox"), ("nature", "owl"), ("food", "cake")]))
    missing = {("nature", "owl"), ("food", "cake")}
    assert chunks.missing_behind(assigned, missing, "input-1a2b3c4d") == []  # nothing digested yet
    digest = chunks.digest_path("input-1a2b3c4d", "nature")
    digest.parent.mkdir(parents=True)
    digest.write_text("[]")
    assert chunks.missing_behind(assigned, missing, "input-1a2b3c4d") == ["results/images/nature/owl.png"]
    # another input sheet's digest of a page of the same name is not this sheet's
    assert chunks.missing_behind(assigned, missing, "other-5e6f7a8b") == []
    assert chunks.missing_behind(assigned, set(), "input-1a2b3c4d") == []


def test_a_png_of_the_same_size_and_time_as_at_the_last_sync_is_not_read_again(tmp_path, monkeypatch):
    from image_batch.sync import upload

    images = tmp_path / "images"
    (images / "nature").mkdir(parents=True)
    for name in ("fox", "owl"):
        (images / "nature" / f"{name}.png").write_bytes(f"png of {name}".encode())
        (images / "nature" / f"{name}.json").write_text("{}")
    names = ["nature/fox.png", "nature/fox.json", "nature/owl.png", "nature/owl.json"]
    first = tmp_path / "chunks" / "nature.json"
    first.parent.mkdir()
    upload.write_chunk_digest(None, first, images, names=names)
    known = tmp_path / "known" / "input-1a2b3c4d.json"
    chunks.keep_digests([first], known)
    kept = chunks.known_digests(known)
    assert sorted(kept) == ["nature/fox.png", "nature/owl.png"]  # sidecars are read again (small)

    read = []
    real = upload.file_digests
    monkeypatch.setattr(upload, "file_digests", lambda path: read.append(str(path)) or real(path))
    (images / "nature" / "owl.png").write_bytes(b"another owl")  # changed: another size and time
    again = tmp_path / "chunks" / "nature_page2.json"
    upload.write_chunk_digest(None, again, images, names=names, known=kept)
    assert sorted(read) == sorted(str(images / name) for name in names if name != "nature/fox.png")
    fresh = upload.digest([images / name for name in names], images)  # no known: every file read
    assert json.loads(again.read_text()) == fresh
    # a PNG touched (same size, another time) is read again too
    read.clear()
    fox = images / "nature" / "fox.png"
    os.utime(fox, ns=(1, 1))
    upload.digest([fox], images, known=kept)
    assert read == [str(fox)]
    # and one replaced with the very size and modification time it had (cp -p, touch -r): its
    # change time differs, which no one can set
    third = tmp_path / "chunks" / "nature_page3.json"
    upload.write_chunk_digest(None, third, images, names=names)
    chunks.keep_digests([third], known)
    kept = chunks.known_digests(known)
    before = os.stat(fox)
    assert kept["nature/fox.png"][:2] == (before.st_size, before.st_mtime_ns)
    fox.write_bytes(b"PNG of fox")  # same length as "png of fox"
    os.utime(fox, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(fox).st_size == before.st_size and os.stat(fox).st_mtime_ns == before.st_mtime_ns
    read.clear()
    entry = upload.digest([fox], images, known=kept)[0]
    assert read == [str(fox)] and entry["sha256"] == hashlib.sha256(b"PNG of fox").hexdigest()


def test_what_the_sync_kept_is_read_once_and_never_trusted_when_broken(tmp_path):
    path = tmp_path / "known.json"
    assert chunks.known_digests(path) == {}  # none yet
    path.write_text('{"a.png": [1, 2, 3, "md5", "sha"], "b.png": [1], "c.png": "x", "d.png": [1, 2, "md5", "sha"]}')
    assert chunks.known_digests(path) == {"a.png": (1, 2, 3, "md5", "sha")}
    assert chunks.known_digests(path) is chunks.known_digests(path)  # read once while unchanged
    path.write_text("not json")
    assert chunks.known_digests(path) == {}
    path.write_text("[1, 2]")
    assert chunks.known_digests(path) == {}


def test_a_real_run_removes_the_chunks_of_the_earlier_layout_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = [
        "results/specs/_chunks/a3.0123456789abcdef.json",
        "results/sync/chunks/a3.json",
        "results/sync/chunks/all.json",
        "results/logs/chunks/a3.log",
    ]
    kept = [
        "results/sync/chunks/input-1a2b3c4d/nature.json",
        "results/logs/chunks/input-1a2b3c4d/nature.log",
        "results/specs/_contact-sheets/input-1a2b3c4d_nature.0123456789abcdef.json",
    ]
    for name in old + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    chunks.remove_earlier_layout()
    assert [name for name in old if (tmp_path / name).exists()] == []
    assert [name for name in kept if (tmp_path / name).exists()] == kept
    chunks.remove_earlier_layout()  # nothing left to remove: no error
