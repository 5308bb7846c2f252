"""`snakemake --report` shows the last run's sheet unless the command line names another."""

import json

import pytest

from image_batch.common.errors import UserError
from image_batch.report.last_run import is_report_run, makes_report, report_sheet

CONFIG = {"input_csv": "config/example.csv"}


@pytest.fixture
def record(tmp_path, monkeypatch):
    """A last run on my.csv, recorded as the integrator's runs record it; run in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.csv").write_text("image_id,context,description\n")
    path = tmp_path / "results" / "logs" / "last-run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"input_csv": "my.csv", "input_sheet": None, "started": "2026-11-27T08:00:00"}))
    return path


@pytest.mark.parametrize(
    ("argv", "report"),
    [
        (["snakemake", "--report", "report.html"], True),
        (["snakemake", "--cores", "4", "--report"], True),  # --report alone means report.html
        (["snakemake", "--report=r.zip", "--cores", "2"], True),
        (["snakemake", "--reporter", "html", "--report-html-path", "x.html"], True),
        (["snakemake", "--cores", "4"], False),
        (["snakemake", "--report", "r.html", "--report-after-run"], False),  # a real run first
        (["snakemake", "-n"], False),
        (["snakemake", "-Rsync", "--report-stylesheet", "s.css"], False),
        (["snakemake", "--cores"], False),  # unparseable: left to Snakemake to refuse
    ],
)
def test_report_runs_are_told_apart_with_snakemakes_own_parser(argv, report):
    assert is_report_run(argv) is report
    # a report is made (its front page shows the contact sheets) also after a run
    assert makes_report(argv) is (report or "--report-after-run" in argv)


def test_a_report_shows_the_last_run_sheet(record):
    choice = report_sheet(CONFIG, {}, ["snakemake", "--report", "report.html"], record)
    assert choice.settings == {"input_csv": "my.csv", "input_sheet": None}
    assert "the report shows the last run's sheet my.csv" in choice.note


def test_a_sheet_named_on_the_command_line_wins(record):
    overrides = {"input_csv": "other.csv"}  # workflow.config_settings.config of --config input_csv=other.csv
    config = {"input_csv": "other.csv"}
    choice = report_sheet(config, overrides, ["snakemake", "--report", "--config", "input_csv=other.csv"], record)
    assert choice.settings == {} and choice.note == ""


def test_other_command_line_config_does_not_count_as_naming_a_sheet(record):
    choice = report_sheet(CONFIG, {"provider": "offline"}, ["snakemake", "--report"], record)
    assert choice.settings["input_csv"] == "my.csv"
    choice = report_sheet(CONFIG, {"input_sheet": "Sheet2"}, ["snakemake", "--report"], record)
    assert choice.settings == {"input_csv": "my.csv"}  # the command line's input_sheet stands


def test_a_real_run_always_uses_the_configured_sheet(record):
    for argv in (["snakemake", "--cores", "4"], ["snakemake", "--report", "r.html", "--report-after-run"]):
        assert report_sheet(CONFIG, {}, argv, record).settings == {}


def test_without_a_usable_record_the_config_sheet_is_shown_and_said(record):
    record.unlink()
    choice = report_sheet(CONFIG, {}, ["snakemake", "--report"], record)
    assert choice.settings == {} and "no record of a last run" in choice.note
    record.write_text("{half a record")
    choice = report_sheet(CONFIG, {}, ["snakemake", "--report"], record)
    assert choice.settings == {} and "is unreadable" in choice.note
    record.write_text(json.dumps({"input_sheet": None}))
    choice = report_sheet(CONFIG, {}, ["snakemake", "--report"], record)
    assert choice.settings == {} and "names no input_csv" in choice.note


def test_a_last_run_sheet_that_is_gone_is_a_clear_error_not_another_sheet(record, tmp_path):
    (tmp_path / "my.csv").unlink()
    with pytest.raises(UserError, match=r"the last run's sheet my.csv .* --config input_csv=SHEET"):
        report_sheet(CONFIG, {}, ["snakemake", "--report"], record)


def test_no_note_when_the_last_run_used_the_configured_sheet(record):
    choice = report_sheet({"input_csv": "my.csv"}, {}, ["snakemake", "--report"], record)
    assert choice.settings == {"input_csv": "my.csv", "input_sheet": None} and choice.note == ""
