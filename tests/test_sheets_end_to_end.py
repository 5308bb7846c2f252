"""Workbooks and European CSVs through the command line: the same rows as a .xlsx, .ods, .xls, a
semicolon or tab text file make the same images as the CSV (no new request, no call); a broken
workbook gets the same kind of clear error as a broken CSV, before anything is called."""

import pytest

from tests.conftest import API_KEY
from tests.support.fake_openai import FakeOpenAI
from tests.test_sheet_formats import every_format

ROWS = [
    ["image_id", "context", "description"],
    ["fox-01", "Nature", "A red fox, in snow"],
    ["owl", "Nature", 'An owl "at dusk"'],
    ["cup", "Café Crème", "A blue cup;\nsteam rising"],
]


@pytest.fixture
def user(runner):
    with FakeOpenAI(api_key=API_KEY) as api:
        runner.env.update(AI_API_KEY=API_KEY, OPENAI_BASE_URL=api.base_url)
        runner.api = api
        yield runner


def test_the_same_rows_in_any_format_make_the_same_images(user):
    files = every_format(user.root, ROWS)
    user.snakemake("--config", "input_csv=comma.csv")
    assert len(user.api.paid_calls) == 3
    for name in files:
        dry = user.snakemake("-n", "--config", f"input_csv={name}")
        assert "estimate: 0 of 3 image(s) to make" in dry.output, name
    done = user.main("book.ods")
    assert done.returncode == 0, done.output[-2000:]
    assert len(user.api.paid_calls) == 3  # nothing was paid again


def test_a_broken_workbook_is_a_clear_error_before_any_call(user):
    (user.root / "sheet.xlsx").write_bytes(b"<html>not a workbook</html>")
    for result in (user.snakemake("-n", "--config", "input_csv=sheet.xlsx", check=False), user.main("sheet.xlsx")):
        assert result.returncode == 2
        assert "sheet.xlsx" in result.output and "Traceback" not in result.output
    assert user.api.calls == []
