"""The gallery: `snakemake --report` shows every image under its context, with its id and prompt."""

import shutil
import subprocess
import zipfile

import pytest

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

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium:  # it opens in a browser: the app renders its menu (headless, no network)
        dom = subprocess.run(
            [
                chromium,
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
