"""The sync's chunks are the sheet's pages (image_batch.sync.chunks, image_batch.common.pages)."""

from image_batch.common.pages import paginate
from image_batch.sync import chunks


def test_a_chunk_is_a_page_of_its_context_in_sheet_order():
    images = [("nature", f"n{i}") for i in range(150)] + [("food", "cake")] + [("nature", "late")]
    assigned = chunks.assign(images)
    assert list(assigned) == ["nature", "nature_page2", "food"]
    assert assigned["nature"] == [("nature", f"n{i}") for i in range(100)]
    assert assigned["nature_page2"] == [("nature", f"n{i}") for i in range(100, 150)] + [("nature", "late")]
    assert assigned["food"] == [("food", "cake")]
    # the contact sheets' pages: the digest of a page is what its sheet takes
    assert {name: [(p.folder, i) for i in p.image_ids] for name, p in paginate(images).items()} == assigned
    assert chunks.assign([]) == {}


def test_digests_belong_to_their_input_sheet():
    assert chunks.digest_path("input-1a2b3c4d", "nature_page2").as_posix() == (
        "results/sync/chunks/input-1a2b3c4d/nature_page2.json"
    )
    assert chunks.digest_path("a-1", "nature") != chunks.digest_path("b-2", "nature")


def test_missing_behind_names_the_missing_pngs_of_digested_pages_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assigned = chunks.assign([("nature", "fox"), ("nature", "owl"), ("food", "cake")])
    missing = {("nature", "owl"), ("food", "cake")}
    assert chunks.missing_behind(assigned, missing, "input-1a2b3c4d") == []  # nothing digested yet
    digest = chunks.digest_path("input-1a2b3c4d", "nature")
    digest.parent.mkdir(parents=True)
    digest.write_text("[]")
    assert chunks.missing_behind(assigned, missing, "input-1a2b3c4d") == ["results/images/nature/owl.png"]
    # another input sheet's digest of a page of the same name is not this sheet's
    assert chunks.missing_behind(assigned, missing, "other-5e6f7a8b") == []
    assert chunks.missing_behind(assigned, set(), "input-1a2b3c4d") == []
