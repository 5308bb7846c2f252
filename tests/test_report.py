"""The gallery: `snakemake --report` shows every image under its context, with its id and prompt,
after the context's contact sheet; and the report shows the last run's sheet."""

import base64
import io
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from snakemake.report import html_reporter

from image_batch.common.pages import paginate, source_slug
from image_batch.report import contact_sheet as cs

SUPPORT = Path(__file__).parent / "support"
# The checks in a browser and with the report's own JavaScript need chromium and node: without them those checks
# are skipped, visibly, with this reason (.ci/run installs both when missing).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
NODE = shutil.which("node")
MISSING = "{} is not installed, so the report was not {}: apt-get install -y {} (.ci/run installs it)"

ROWS = [
    ("cake", "Food & Beverage", "A layered chocolate cake"),
    ("fox", "Nature", "A red fox in snow"),
    ("oak", "Nature", "An old oak at dusk"),
]


@pytest.fixture
def made(runner):
    sheet = "image_id,context,description\n" + "".join(f"{i},{c},{d}\n" for i, c, d in ROWS)
    (runner.root / "input.csv").write_text(sheet)
    runner.snakemake("--config", "input_csv=input.csv")  # offline generator: no key
    return runner


def test_html_report_lists_every_image_under_its_context(made):
    made.snakemake("--config", "input_csv=input.csv", "--report", "report.html")
    html = (made.root / "report.html").read_text(encoding="utf-8")
    for image_id, context, prompt in ROWS:
        assert f"{image_id}.png" in html and context in html and prompt in html
    assert '"Images"' in html

    if not CHROMIUM:
        pytest.skip(MISSING.format("chromium", "opened in a browser", "chromium"))
    # it opens in a browser: the app renders its menu (headless, no network)
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (made.root / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "Results" in dom and "Snakemake" in dom


def test_zip_report_for_large_batches_holds_the_images(made):
    made.snakemake("--config", "input_csv=input.csv", "--report", "report.zip")
    with zipfile.ZipFile(made.root / "report.zip") as archive:
        names = archive.namelist()
    for image_id, _, _ in ROWS:
        assert any(name.endswith(f"{image_id}.png") for name in names), names


# --- contact sheets ------------------------------------------------------------------------------

SHEETS = {"Food & Beverage": "food-beverage", "Nature": "nature"}


def report_data(html_path):
    """The report's embedded data: {"categories": ..., "results": ...}."""
    html = html_path.read_text(encoding="utf-8")
    data = {}
    for name in ("categories", "results"):
        found = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
        assert found, f"no {name} in {html_path}"
        data[name] = json.loads(found.group(1))
    return data


def table_order(data, tmp_path):
    """Each subcategory's rows top to bottom, as the report's own JavaScript orders them (with
    node); without node, the test is skipped here (its earlier checks have passed)."""
    if not NODE:
        pytest.skip(MISSING.format("node", "sorted by its own JavaScript", "nodejs"))
    components = Path(html_reporter.__file__).parent / "template" / "components"
    data_file = tmp_path / "report-data.json"
    data_file.write_text(json.dumps(data))
    done = subprocess.run(
        [NODE, str(SUPPORT / "report_table.js"), str(components), str(data_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def assert_sheets_first(data, tmp_path):
    """Under every context, its contact sheet is the first row of the report's table, and every
    image follows."""
    images = data["categories"]["Images"]
    for context, paths in images.items():
        sheets = [p for p in paths if p.startswith("results/contact-sheets/")]
        assert sheets, f"no contact sheet under {context}: {paths}"
        labels = [data["results"][p]["labels"] for p in paths]
        # the same columns on every row, the same context: rows are told apart by image id, and
        # the sheets' is empty, which every locale's collation sorts before any image id
        assert all(list(row) == ["context", "image id", "prompt"] for row in labels), labels
        assert {row["context"] for row in labels} == {context}
        assert all(data["results"][p]["labels"]["image id"] == "" for p in sheets)
        assert all(data["results"][p]["labels"]["image id"] for p in paths if p not in sheets)


def assert_sorted_sheets_first(data, tmp_path):
    """The report's own sort (its JavaScript, run by node) puts each context's contact sheet first."""
    order = table_order(data, tmp_path)
    for context, paths in data["categories"]["Images"].items():
        rows = order["Images"][context]
        assert sorted(rows) == sorted(paths), (context, rows)  # every item its own row
        assert rows[0].startswith("results/contact-sheets/"), (context, rows)


def sheets_of(csv):
    """Where the contact sheets of input sheet ``csv`` are (relative to the project)."""
    return f"results/contact-sheets/{source_slug(csv)}"


def test_a_run_makes_one_contact_sheet_per_context_that_opens_on_its_own(made):
    sheets = sorted((made.root / "results" / "contact-sheets").glob("*/*.jpg"))
    assert [p.stem for p in sheets] == sorted(SHEETS.values())
    assert {p.parent.name for p in sheets} == {source_slug("input.csv")}
    with Image.open(made.root / sheets_of("input.csv") / "nature.jpg") as sheet:
        assert sheet.format == "JPEG"
        assert sheet.height == 2 * cs.MARGIN + cs.TITLE_HEIGHT + cs.THUMB + cs.CAPTION_HEIGHT  # one row
        assert sheet.width == 2 * cs.MARGIN + 2 * cs.THUMB + cs.GAP  # fox and oak
    log = (made.root / f"results/logs/contact-sheets/{source_slug('input.csv')}/nature.log").read_text()
    assert "2 images (2 decoded" in log


def test_the_report_shows_each_context_contact_sheet_first(made, tmp_path):
    made.snakemake("--config", "input_csv=input.csv", "--report", "report.html")
    data = report_data(made.root / "report.html")
    assert set(data["categories"]["Images"]) == set(SHEETS)
    for context, folder in SHEETS.items():
        path = f"{sheets_of('input.csv')}/{folder}.jpg"
        assert path in data["categories"]["Images"][context]
        entry = data["results"][path]
        assert entry["mime_type"] == "image/jpeg"
        embedded = base64.b64decode(entry["data_uri"].split(";base64,", 1)[1])
        assert embedded == (made.root / path).read_bytes()  # the very sheet a person can open
        assert entry["labels"]["prompt"].startswith("Contact sheet")
    assert_sheets_first(data, tmp_path)
    assert_sorted_sheets_first(data, tmp_path)


def test_a_rerun_remakes_only_the_sheet_of_a_changed_image_and_decodes_only_it(made):
    fox = made.root / "results/images/nature/fox.png"
    with Image.open(fox) as image:
        image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(fox)  # as if made again
    before = (made.root / sheets_of("input.csv") / "food-beverage.jpg").stat().st_mtime_ns
    made.snakemake("--config", "input_csv=input.csv")
    log = (made.root / f"results/logs/contact-sheets/{source_slug('input.csv')}/nature.log").read_text()
    assert "2 images (1 decoded, 1 hashed, 1 unchanged)" in log.splitlines()[-1]
    assert (made.root / sheets_of("input.csv") / "food-beverage.jpg").stat().st_mtime_ns == before
    again = made.snakemake("--verbose", "--config", "input_csv=input.csv")  # --verbose: Snakemake's job blocks
    assert "Nothing to be done" in again.output
    assert "contact_sheet" not in again.output  # nothing changed: no sheet job at all


def test_the_report_shows_the_last_run_sheet_unless_told_otherwise(made, tmp_path):
    # ids starting with "_" and "-": what most collations put before letters, digits and "("
    (made.root / "other.csv").write_text(
        "image_id,context,description\n_bus,Vehicles,A red bus\n-tram,Vehicles,A tram\n"
    )
    made.snakemake("--config", "input_csv=other.csv")
    assert (made.root / sheets_of("other.csv") / "vehicles.jpg").is_file()
    record = json.loads((made.root / "results/logs/last-run.json").read_text())  # every real run's record
    assert record["input_csv"] == "other.csv" and record["input_sheet"] is None

    shown = made.snakemake("--report", "r.html")  # the config file still says config/example.csv
    data = report_data(made.root / "r.html")
    assert list(data["categories"]["Images"]) == ["Vehicles"]
    assert f"{sheets_of('other.csv')}/vehicles.jpg" in data["results"]
    assert "the last run's sheet other.csv" in shown.output
    assert_sheets_first(data, tmp_path)

    made.snakemake("--report", "r2.html", "--config", "input_csv=input.csv")  # told otherwise
    told = report_data(made.root / "r2.html")
    assert set(told["categories"]["Images"]) == set(SHEETS)
    assert_sheets_first(told, tmp_path)
    assert_sorted_sheets_first(data, tmp_path)  # last: skipped without node
    assert_sorted_sheets_first(told, tmp_path)


def test_a_report_after_a_run_with_a_failed_image_shows_what_was_made(runner, tmp_path):
    from tests.conftest import API_KEY
    from tests.support.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key=API_KEY) as api:
        runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        api.set_behavior("red fox", "moderation")  # this row fails; the others are made
        sheet = "image_id,context,description\n" + "".join(f"{i},{c},{d}\n" for i, c, d in ROWS)
        (runner.root / "input.csv").write_text(sheet)
        failed = runner.snakemake("--config", "input_csv=input.csv", check=False)
        assert failed.returncode != 0 and not (runner.root / "results/images/nature/fox.png").exists()
        before = {p: p.stat().st_mtime_ns for p in (runner.root / "results").rglob("*") if p.is_file()}
        calls = len(api.calls)
        shown = runner.snakemake("--report", "r.html")
        assert len(api.calls) == calls  # a report calls nothing
    data = report_data(runner.root / "r.html")
    names = " ".join(data["results"])
    assert "oak.png" in names and "cake.png" in names and "fox.png" not in names
    assert "Traceback" not in shown.output
    after = {p: p.stat().st_mtime_ns for p in (runner.root / "results").rglob("*") if p.is_file()}
    assert after == before  # a report writes nothing under results/


def test_a_report_asked_with_settings_not_run_yet_shows_what_was_made(made):
    """After a change of settings (here a what-if given on the command line) and before the run that
    makes it, the images' request files are named for settings no run has used: the report shows
    what was made, writes nothing, and no missing request file stops it."""
    before = {p: p.stat().st_mtime_ns for p in (made.root / "results").rglob("*") if p.is_file()}
    shown = made.snakemake("--config", "input_csv=input.csv", "variant=what-if", "--report", "r.html", check=False)
    assert shown.returncode == 0 and "Traceback" not in shown.output, shown.output[-3000:]
    html = (made.root / "r.html").read_text(encoding="utf-8")
    assert all(f"{image_id}.png" in html for image_id, _, _ in ROWS)
    after = {p: p.stat().st_mtime_ns for p in (made.root / "results").rglob("*") if p.is_file()}
    assert after == before


def test_a_report_before_any_run_says_what_to_do_first(runner):
    for command in (runner.snakemake, lambda *a, **k: runner.main(*a)):
        result = command("--report", "report.html", **({"check": False} if command == runner.snakemake else {}))
        assert result.returncode == 2 and "Traceback" not in result.output, result.output[-3000:]
        assert "nothing has been made here yet" in result.output and "MissingInput" not in result.output
    assert not (runner.root / "report.html").exists() and not (runner.root / "results").exists()


# --- whose contact sheets, and the front page ----------------------------------------------------

A_ROWS = [("fox", "Nature", "A red fox in snow"), ("oak", "Nature", "An old oak at dusk"), ("cake", "Food", "A cake")]
B_ROWS = [("bus", "Nature", "A red bus"), ("tram", "Vehicles", "A tram")]  # shares "Nature" with A


def write_sheet(path, rows):
    path.write_text("image_id,context,description\n" + "".join(f"{i},{c},{d}\n" for i, c, d in rows))


def landing_page(html):
    """The report's front page (the workflow description, as HTML)."""
    found = re.search(r'<script id="workflow-desc">\s*var workflow_desc = (.*?);\s*</script>', html, re.S)
    assert found, "no workflow description in the report"
    return json.loads(found.group(1))


def previews(page):
    """{contact sheet path it opens: preview image} of the front page's gallery."""
    found = re.findall(
        r"<a href=\"javascript:app\.showResultInfo\(&#x27;([^&]+)&#x27;\)\"[^>]*>"
        r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=\s]+)"',
        page,
    )
    shown = {}
    for path, data in found:
        with Image.open(io.BytesIO(base64.b64decode("".join(data.split())))) as image:
            image.load()
            shown[path] = image.convert("RGB")
    return shown


def assert_front_page_shows(page, root, paths):
    """The front page shows exactly the contact sheets ``paths``, each a picture of that very sheet,
    before anything else it says about the workflow."""
    shown = previews(page)
    assert sorted(shown) == sorted(paths), page[:2000]
    assert page.index("<img") < page.index("Image.Batch turned the sheet")
    for path, preview in shown.items():
        with Image.open(root / path) as sheet:
            full = sheet.convert("RGB")
        assert preview.width == min(full.width, 1024)
        small = full.resize(preview.size, Image.Resampling.LANCZOS)
        difference = ImageChops.difference(small, preview).convert("L")
        assert ImageStat.Stat(difference).mean[0] < 8, path  # the same picture


def test_two_sheets_sharing_a_context_never_show_each_other_contact_sheets(runner):
    write_sheet(runner.root / "a.csv", A_ROWS)
    write_sheet(runner.root / "b.csv", B_ROWS)
    a_sheets, b_sheets = runner.root / sheets_of("a.csv"), runner.root / sheets_of("b.csv")
    assert a_sheets != b_sheets
    runner.snakemake("--config", "input_csv=a.csv")
    a_nature = (a_sheets / "nature.jpg").read_bytes()
    a_mtime = (a_sheets / "nature.jpg").stat().st_mtime_ns
    runner.snakemake("--config", "input_csv=b.csv")  # B's "Nature" is the same folder of images
    assert (runner.root / "results/images/nature/bus.png").is_file()
    assert (a_sheets / "nature.jpg").read_bytes() == a_nature  # a run of B leaves A's sheet alone
    assert (a_sheets / "nature.jpg").stat().st_mtime_ns == a_mtime
    assert sorted(p.name for p in b_sheets.glob("*.jpg")) == ["nature.jpg", "vehicles.jpg"]
    with Image.open(a_sheets / "nature.jpg") as a_sheet, Image.open(b_sheets / "nature.jpg") as b_sheet:
        assert a_sheet.width == 2 * cs.MARGIN + 2 * cs.THUMB + cs.GAP  # fox and oak, no bus
        assert b_sheet.width < a_sheet.width  # the bus alone

    for report, sheet, rows, other in (("a.html", "a.csv", A_ROWS, B_ROWS), ("b.html", "b.csv", B_ROWS, A_ROWS)):
        runner.snakemake("--config", f"input_csv={sheet}", "--report", report)
        html = (runner.root / report).read_text(encoding="utf-8")
        data = report_data(runner.root / report)
        assert set(data["categories"]["Images"]) == {context for _, context, _ in rows}
        shown_sheets = sorted(p for p in data["results"] if p.startswith("results/contact-sheets/"))
        mine = sorted(f"{sheets_of(sheet)}/{paginate([(c.lower(), i)]).popitem()[0]}.jpg" for i, c, _ in rows)
        assert shown_sheets == sorted(set(mine))  # only this sheet's contact sheets ...
        names = {Path(p).name for p in data["results"]}
        assert {f"{i}.png" for i, _, _ in rows} <= names  # ... and images
        assert not {f"{i}.png" for i, _, _ in other} & names
        for path in shown_sheets:  # each the very file this sheet's run made
            embedded = base64.b64decode(data["results"][path]["data_uri"].split(";base64,", 1)[1])
            assert embedded == (runner.root / path).read_bytes()
        assert_front_page_shows(landing_page(html), runner.root, shown_sheets)
    assert (a_sheets / "nature.jpg").read_bytes() == a_nature


def test_the_report_opens_on_the_contact_sheets(made, tmp_path):
    made.snakemake("--config", "input_csv=input.csv", "--report", "report.zip")  # a .zip report too
    with zipfile.ZipFile(made.root / "report.zip") as archive:
        (index,) = [name for name in archive.namelist() if name.endswith("report.html")]
        page = landing_page(archive.read(index).decode("utf-8"))
    sheets = [f"{sheets_of('input.csv')}/{folder}.jpg" for folder in SHEETS.values()]
    assert_front_page_shows(page, made.root, sheets)

    made.snakemake("--config", "input_csv=input.csv", "--report", "report.html")
    if not CHROMIUM:
        pytest.skip(MISSING.format("chromium", "opened in a browser", "chromium"))
    # in a browser, the first screen (before any click) holds the contact sheets' pictures
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--window-size=1400,1000",
            "--dump-dom",
            (made.root / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shown = re.findall(r"showResultInfo\('([^']+)'\)\"[^>]*><img src=\"data:image/jpeg", dom)
    assert sorted(shown) == sorted(sheets), dom[-3000:]
    screenshot = tmp_path / "first-screen.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--window-size=1400,1000",
            f"--screenshot={screenshot}",
            (made.root / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(screenshot) as shot:
        shot = shot.convert("RGB")
    # the sheets' dark background fills a good part of the first screen (Snakemake's own page is
    # light), below the line that opens the page (which is on the screen, not cut off above it)
    mask = Image.eval(
        ImageChops.difference(shot, Image.new("RGB", shot.size, cs.BACKGROUND)).convert("L"), lambda v: v <= 3
    )
    dark_rows = [y for y in range(shot.height) if sum(mask.crop((0, y, shot.width, y + 1)).get_flattened_data()) >= 50]
    assert len(dark_rows) > shot.height // 5, len(dark_rows)
    assert 40 < dark_rows[0] < shot.height // 3, dark_rows[0]
