"""Contact sheets: the grid, the captions, paging, determinism, and the thumbnail cache."""

import base64
import io
import json
import os
import re

import pytest
from PIL import Image, ImageChops, ImageDraw

from image_batch.common.pages import paginate, source_slug
from image_batch.report import contact_sheet as cs
from image_batch.report import gallery

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (200, 40, 200), (40, 200, 200)]


def write_png(path, colour, size=(96, 96), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def context_of(tmp_path, count, folder="nature", size=(96, 96)):
    """``count`` PNGs of distinct colours, and the member info of their (single) sheet."""
    pngs = [
        write_png(tmp_path / "images" / folder / f"img-{i:03d}.png", COLOURS[i % len(COLOURS)], size)
        for i in range(count)
    ]
    (page,) = paginate([(folder, p.stem) for p in pngs], page_size=max(count, 1)).values()
    return cs.members(page, folder.title()), pngs


def build(tmp_path, info, pngs, name="nature"):
    output = tmp_path / "sheets" / f"{name}.jpg"
    stats = cs.build(info, pngs, output, cache_root=tmp_path / "cache")
    return output, stats


def near(pixel, colour, tolerance=16):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_grid_has_one_cell_per_image_ten_to_a_row(tmp_path):
    info, pngs = context_of(tmp_path, 23)
    output, _ = build(tmp_path, info, pngs)
    with Image.open(output) as sheet:
        assert sheet.format == "JPEG"
        sheet = sheet.convert("RGB")
    columns, rows = cs.grid(23)
    assert (columns, rows) == (10, 3)
    assert sheet.size == (
        2 * cs.MARGIN + 10 * cs.THUMB + 9 * cs.GAP,
        2 * cs.MARGIN + cs.TITLE_HEIGHT + 3 * (cs.THUMB + cs.CAPTION_HEIGHT) + 2 * cs.GAP,
    )
    for index in range(30):
        x, y = cs.cell_origin(index, columns)
        centre = sheet.getpixel((x + cs.THUMB // 2, y + cs.THUMB // 2))
        if index < 23:  # each image, in sheet order (small images are not scaled up)
            assert near(centre, COLOURS[index % len(COLOURS)]), (index, centre)
        else:  # the rest of the last row is bare background
            assert near(centre, cs.BACKGROUND), (index, centre)


def test_aspect_is_kept_and_a_small_context_gets_a_small_sheet(tmp_path):
    wide = write_png(tmp_path / "images" / "x" / "wide.png", COLOURS[0], size=(400, 100))
    (page,) = paginate([("x", "wide")]).values()
    output, _ = build(tmp_path, cs.members(page, "X"), [wide], "x")
    with Image.open(output) as sheet:
        sheet = sheet.convert("RGB")
    assert sheet.height == 2 * cs.MARGIN + cs.TITLE_HEIGHT + cs.THUMB + cs.CAPTION_HEIGHT
    assert sheet.width < 2 * cs.MARGIN + 2 * cs.THUMB  # one column
    x, y = cs.cell_origin(0, 1)
    middle = y + cs.THUMB // 2
    assert near(sheet.getpixel((x + 10, middle)), COLOURS[0])  # 256 x 64: full width ...
    assert near(sheet.getpixel((x + 10, middle - 40)), cs.CELL)  # ... a quarter of the height
    assert near(sheet.getpixel((x + 10, middle + 40)), cs.CELL)


def caption_strip(sheet, index, columns):
    x, y = cs.cell_origin(index, columns)
    return sheet.crop((x, y + cs.THUMB, x + cs.THUMB, y + cs.THUMB + cs.CAPTION_HEIGHT))


def expected_strip(text):
    """The caption strip as it looks with ``text`` written in it, drawn here on its own."""
    strip = Image.new("RGB", (cs.THUMB, cs.CAPTION_HEIGHT), cs.BACKGROUND)
    face = cs.font(cs.CAPTION_SIZE)
    ImageDraw.Draw(strip).text((cs.THUMB // 2, 5), text, font=face, fill=cs.CAPTION_COLOUR, anchor="ma")
    return strip


def test_each_thumbnail_is_captioned_with_its_image_id(tmp_path):
    ids = ["fox", "oak-at-dusk", "x" * 30 + "-middle-" + "y" * 30 + "-0042-front"]
    tiles = [(image_id, Image.new("RGB", (64, 64), COLOURS[i])) for i, image_id in enumerate(ids)]
    sheet = cs.render("Nature  ·  3 images", tiles)  # the sheet before JPEG: exact pixels
    face = cs.font(cs.CAPTION_SIZE)
    shown = [cs.fit_middle(image_id, face, cs.THUMB - 8) for image_id in ids]
    assert shown[:2] == ids[:2] and shown[2] != ids[2]  # only the long id is shortened
    for index, text in enumerate(shown):
        strip = caption_strip(sheet, index, 3)
        assert ImageChops.difference(strip, expected_strip(text)).getbbox() is None, index
        other = shown[(index + 1) % 3]
        assert ImageChops.difference(strip, expected_strip(other)).getbbox() is not None, index


def test_long_ids_keep_their_start_and_end():
    face = cs.font(cs.CAPTION_SIZE)
    long_id = "product-shot-of-the-brass-desk-lamp-on-an-oak-desk-three-quarter-view-0042-front"
    shown = cs.fit_middle(long_id, face, 248)
    assert face.getlength(shown) <= 248 < face.getlength(long_id)
    head, tail = shown.split(cs.ELLIPSIS)
    assert long_id.startswith(head) and long_id.endswith(tail) and len(head) >= 10 and len(tail) >= 10
    assert abs(len(head) - len(tail)) <= 1
    assert cs.fit_middle("fox", face, 248) == "fox"
    title = cs.fit_end("A" * 400, cs.font(cs.TITLE_SIZE), 500)
    assert title.endswith(cs.ELLIPSIS) and cs.font(cs.TITLE_SIZE).getlength(title) <= 500


def test_titles_use_only_characters_the_bundled_font_has():
    assert cs.drawable("Crème brûlée & Café") == "Creme brulee & Cafe"
    assert cs.drawable("Tokyo 東京") == "Tokyo ??"
    assert cs.drawable("img_01.v2-x") == "img_01.v2-x"


def test_same_inputs_give_the_same_bytes_from_a_cold_or_a_warm_cache(tmp_path):
    info, pngs = context_of(tmp_path, 7, size=(300, 200))  # img-006 looks like img-000: decoded once
    first = cs.build(info, pngs, tmp_path / "a.jpg", cache_root=tmp_path / "cache-a")
    cs.build(info, pngs, tmp_path / "b.jpg", cache_root=tmp_path / "cache-b")  # another cold cache
    warm = cs.build(info, pngs, tmp_path / "a2.jpg", cache_root=tmp_path / "cache-a")
    assert first.decoded == 6 and warm.decoded == 0
    data = (tmp_path / "a.jpg").read_bytes()
    assert data == (tmp_path / "b.jpg").read_bytes() == (tmp_path / "a2.jpg").read_bytes()
    info["context"] = "Other"  # the title is part of the sheet
    cs.build(info, pngs, tmp_path / "c.jpg", cache_root=tmp_path / "cache-a")
    assert (tmp_path / "c.jpg").read_bytes() != data


def test_a_large_context_is_split_into_pages_of_100():
    images = [("nature", f"n{i}") for i in range(250)] + [("nature-2", "m0"), ("nature", "late")]
    sheets = paginate(images)
    assert list(sheets) == ["nature", "nature_page2", "nature_page3", "nature-2"]
    assert [len(sheets[name].image_ids) for name in sheets] == [100, 100, 51, 1]
    third = sheets["nature_page3"]
    assert (third.page, third.pages, third.first, third.total) == (3, 3, 201, 251)
    assert third.image_ids[-1] == "late"  # sheet order within the context
    # page 2 of "nature" never collides with the first sheet of a context whose folder is "nature-2"
    assert cs.sheet_path("nature_page2", "s-1") != cs.sheet_path("nature-2", "s-1")
    constraint = re.compile("[a-z0-9]+(-[a-z0-9]+)*(_page[0-9]+)?")  # the rule's wildcard constraint
    assert all(constraint.fullmatch(name) for name in sheets)
    info = cs.members(sheets["nature_page2"], "Nature")
    assert cs.title(info) == "Nature  ·  251 images  ·  page 2 of 3, images 101-200"
    assert cs.title(cs.members(sheets["nature-2"], "Nature 2")) == "Nature 2  ·  1 image"
    assert cs.sheet_pngs(sheets, "nature-2") == ["results/images/nature-2/m0.png"]
    with pytest.raises(KeyError):
        cs.sheet_pngs(sheets, "nature_page4")


def test_a_full_page_is_a_ten_by_ten_grid(tmp_path):
    info, pngs = context_of(tmp_path, 100, size=(32, 32))
    output, _ = build(tmp_path, info, pngs)
    with Image.open(output) as sheet:
        assert sheet.size == (2752, 2 * cs.MARGIN + cs.TITLE_HEIGHT + 10 * (cs.THUMB + cs.CAPTION_HEIGHT) + 9 * cs.GAP)


def test_member_files_change_only_when_what_a_sheet_shows_changes(tmp_path, monkeypatch):
    """A sheet's member file is named by its content: the same sheet names the same file (nothing
    is written while planning), a change of order, title or membership names another. Its page's
    digest (the consumer) takes it only when it changed, and writes it itself for a page not
    digested yet."""
    monkeypatch.chdir(tmp_path)  # (the sheets are under results/)
    sheets = paginate([("nature", "fox"), ("nature", "oak")])
    root = tmp_path / "members"
    digests = tmp_path / "digests"
    digest = str(digests / "nature.json")
    first = cs.member_files(sheets, {"nature": "Nature"}, "a-1a2b3c4d", lambda name: digests / f"{name}.json", root)
    path = first.paths["nature"]
    assert first.files.due == [] and first.files.input(path) == [] and not root.exists()  # the digest writes it
    first.files.ensure(path)
    with open(path, encoding="utf-8") as members:
        assert json.load(members)["image_ids"] == ["fox", "oak"]
    digests.mkdir()
    with open(digest, "w") as made:
        made.write("[]")  # the digest, made after its member file
    os.utime(path, (1_000_000_000, 1_000_000_000))
    consumer = lambda name: digests / f"{name}.json"  # noqa: E731
    same = cs.member_files(sheets, {"nature": "Nature"}, "a-1a2b3c4d", consumer, root)
    assert same.paths == first.paths and same.files.due == [] and same.files.input(path) == []  # unchanged
    os.utime(path)  # written by a run that stopped before the digest: newer, so the digest takes it
    newer = cs.member_files(sheets, {"nature": "Nature"}, "a-1a2b3c4d", consumer, root)
    assert newer.files.due == [] and newer.files.input(path) == path
    moved = cs.member_files(
        paginate([("nature", "oak"), ("nature", "fox")]), {"nature": "Nature"}, "a-1a2b3c4d", consumer, root
    )
    assert moved.files.due == [moved.paths["nature"]] and moved.files.input(moved.paths["nature"])  # a run writes it
    renamed = cs.member_files(sheets, {"nature": "Nature!"}, "a-1a2b3c4d", consumer, root)
    assert len({first.paths["nature"], moved.paths["nature"], renamed.paths["nature"]}) == 3
    moved.files.write(os.path.basename(moved.paths["nature"]))
    assert [p.name for p in root.iterdir()] == [os.path.basename(moved.paths["nature"])]  # the old one went
    # another input sheet's contact sheet of the same folder has its own member file: writing
    # it (a run of that sheet) never deletes this sheet's
    other = cs.member_files(paginate([("nature", "bus")]), {"nature": "Nature"}, "b-5e6f7a8b", consumer, root)
    other.files.write(os.path.basename(other.paths["nature"]))
    assert sorted(p.name for p in root.iterdir()) == sorted(
        os.path.basename(path) for path in (moved.paths["nature"], other.paths["nature"])
    )


def test_contexts_come_from_the_rows():
    specs = [
        {"folder": "food-beverage", "context": "Food & Beverage"},
        {"folder": "nature", "context": "Nature"},
        {"folder": "nature", "context": "Nature"},
    ]
    assert cs.contexts(specs) == {"food-beverage": "Food & Beverage", "nature": "Nature"}


class CountingDecodes:
    def __init__(self, monkeypatch):
        self.paths = []
        real = cs.make_thumbnail

        def counted(path):
            self.paths.append(os.path.basename(path))
            return real(path)

        monkeypatch.setattr(cs, "make_thumbnail", counted)


def test_a_rebuild_decodes_only_the_images_that_changed(tmp_path, monkeypatch):
    info, pngs = context_of(tmp_path, 5, size=(200, 200))
    decodes = CountingDecodes(monkeypatch)
    output, stats = build(tmp_path, info, pngs)
    assert (stats.decoded, stats.hashed, stats.reused) == (5, 5, 0) and len(decodes.paths) == 5
    before = output.read_bytes()

    decodes.paths.clear()
    _, stats = build(tmp_path, info, pngs)  # nothing changed: not even read
    assert (stats.decoded, stats.hashed, stats.reused) == (0, 0, 5) and decodes.paths == []
    assert output.read_bytes() == before

    write_png(pngs[2], (250, 250, 250), size=(200, 200))  # a new image for img-002
    os.utime(pngs[4])  # a touched one: same bytes, new mtime
    _, stats = build(tmp_path, info, pngs)
    assert decodes.paths == ["img-002.png"]
    assert (stats.decoded, stats.hashed, stats.reused) == (1, 2, 3)
    after = output.read_bytes()
    assert after != before
    with Image.open(output) as sheet:
        x, y = cs.cell_origin(2, 5)
        assert near(sheet.convert("RGB").getpixel((x + 128, y + 128)), (250, 250, 250))

    decodes.paths.clear()
    _, stats = build(tmp_path, info, pngs)
    assert (stats.decoded, stats.hashed, stats.reused) == (0, 0, 5) and output.read_bytes() == after
    # the replaced content's thumbnail is gone; one thumbnail per image remains
    assert len(list((tmp_path / "cache" / "nature").glob("*.jpg"))) == 5


def test_an_image_moving_to_another_page_is_not_decoded_again(tmp_path, monkeypatch):
    info, pngs = context_of(tmp_path, 3)
    build(tmp_path, info, pngs, "nature")
    decodes = CountingDecodes(monkeypatch)
    _, stats = build(tmp_path, info, pngs[1:], "nature_page2")  # a new page: its own, empty index
    assert decodes.paths == [] and (stats.decoded, stats.hashed) == (0, 2)


def test_a_damaged_cache_is_rebuilt_not_trusted(tmp_path, monkeypatch):
    info, pngs = context_of(tmp_path, 3)
    output, _ = build(tmp_path, info, pngs)
    good = output.read_bytes()
    cache = tmp_path / "cache" / "nature"
    next(iter(sorted(cache.glob("*.jpg")))).unlink()
    (cache / "sheets" / "nature.index.json").write_text("{not json")  # this sheet's index (in sheets/)
    decodes = CountingDecodes(monkeypatch)
    _, stats = build(tmp_path, info, pngs)
    assert len(decodes.paths) == 1 and stats.hashed == 3
    assert output.read_bytes() == good


@pytest.mark.parametrize(
    ("mode", "colour"),
    [("RGBA", (200, 30, 30, 0)), ("LA", (128, 255)), ("L", 90), ("P", 3), ("I;16", 40000), ("1", 1)],
)
def test_any_png_mode_makes_a_thumbnail(tmp_path, mode, colour):
    png = write_png(tmp_path / "images" / "x" / "odd.png", colour, size=(512, 384), mode=mode)
    thumb = cs.make_thumbnail(png)
    assert thumb.mode == "RGB" and thumb.size == (cs.THUMB, cs.THUMB * 3 // 4)
    if mode == "RGBA":  # transparent pixels show the cell behind them
        assert thumb.getpixel((10, 10)) == cs.CELL
    if mode == "I;16":  # 16-bit grey keeps its brightness
        assert abs(thumb.getpixel((10, 10))[0] - 40000 // 256) <= 1


def test_the_job_logs_what_it_decoded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    info, pngs = context_of(tmp_path, 2)
    members = tmp_path / "nature.json"
    members.write_text(json.dumps(info))
    cs.build_job(members, [str(p) for p in pngs], "results/contact-sheets/input-1a2b3c4d/nature.jpg", "sheet.log")
    log = (tmp_path / "sheet.log").read_text()
    assert "2 images (2 decoded, 2 hashed, 0 unchanged)" in log
    # the thumbnails are the folder's, the index is this input sheet's contact sheet's
    assert (tmp_path / cs.CACHE_ROOT / "nature" / "input-1a2b3c4d" / "nature.index.json").is_file()


def test_each_input_sheet_has_its_own_folder_of_contact_sheets():
    slug = source_slug("images.csv")
    assert re.fullmatch(r"images-[0-9a-f]{8}", slug)
    assert source_slug("./images.csv") == slug  # the same file, written two ways
    assert source_slug("other/images.csv") != slug  # another images.csv
    assert source_slug("book.xlsx", "Fruit") != source_slug("book.xlsx", "Vegetables")
    assert source_slug("Crème Brûlée (v2).CSV").startswith("creme-brulee-v2-")
    assert cs.sheet_path("nature", slug) == cs.SHEET_ROOT / slug / "nature.jpg"


def test_a_sheet_is_labelled_like_an_image_with_an_empty_id_so_it_sorts_first(tmp_path):
    class Input:
        pass

    spec = tmp_path / "fox.json"
    spec.write_text(json.dumps({"context": "Nature", "image_id": "fox", "request": {"prompt": "A fox"}}))
    image_input, sheet_input = Input(), Input()
    image_input.spec = spec
    pages = paginate([("nature", f"n{i}") for i in range(1150)])
    infos = [cs.members(page, "Nature") for page in pages.values()]
    for info in infos:
        path = tmp_path / f"{info['page']}.json"
        path.write_text(json.dumps(info))
        sheet_input.members = path
        labels = gallery.sheet_labels(None, sheet_input)
        assert list(labels) == list(gallery.labels(None, image_input))  # the same columns
        assert labels["image id"] == "" and labels["context"] == gallery.sheet_context(None, sheet_input)
    descriptions = [gallery.sheet_description(info) for info in infos]
    assert descriptions[1] == "Contact sheet 02 of 12: images 101-200 of 1,150 images"
    assert sorted(descriptions) == descriptions  # pages in page order (zero-padded numbers)
    assert gallery.sheet_description(cs.members(paginate([("x", "a")])["x"], "X")) == (
        "Contact sheet: all 1 image at a glance"
    )


def test_the_report_front_page_shows_first_pages_first_and_links_the_rest(tmp_path, monkeypatch):
    """gallery.landing: a preview per contact sheet of the report (not of its images), first pages
    first up to the limit, the rest as links; each preview links to its sheet in the report."""
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    source = cs.SHEET_ROOT / "input-1a2b3c4d"
    records = []
    for name in ("city_page2", "nature", "food", "city"):
        path = source / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2048, 512), (90, 90, 90)).save(path)
        records.append(SimpleNamespace(path=path, labels={"context": name.title(), "image id": "", "prompt": "sheet"}))
    image = write_png(tmp_path / "results/images/nature/fox.png", COLOURS[0])
    records.append(SimpleNamespace(path=image.relative_to(tmp_path), labels={}))
    page = gallery.landing(records, limit=3)
    shown = re.findall(r"showResultInfo\(&#x27;([^&]+)&#x27;\)\" title", page)
    assert shown == [f"{source}/{name}.jpg" for name in ("city", "food", "nature")]  # page 2 did not fit
    assert (
        f'1 more contact sheets under Images: <a href="javascript:app.showResultInfo(&#x27;{source}/city_page2.jpg'
        in page
    )
    assert "fox" not in page
    assert max(len(line) for line in page.splitlines()) < 10_000  # docutils refuses longer lines
    previews = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=\s]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode("".join(previews[0].split())))) as preview:
        assert preview.size == (gallery.PREVIEW_WIDTH, 256)  # aspect kept
    assert not list((tmp_path / "results").rglob("*preview*")) and gallery.landing(records[-1:]) == ""
