"""Which sheet ``snakemake --report`` shows: the last run's, unless told otherwise.

A report run parses the Snakefile like any run, so without this it would plan (and show) the
config file's ``input_csv`` (the example sheet) even after ``python main.py my.csv``.  Every real
run records its sheet in ``results/logs/last-run.json``; a report run takes the sheet from there,
unless ``--config input_csv=...`` names one on the command line.

Snakemake does not tell the Snakefile that it is parsed for a report, so the command line is read
with Snakemake's own argument parser.  That answer chooses which sheet to show and nothing else:
a wrong guess can only show another sheet's images (a real run, including
``--report-after-run``, always uses the configured sheet).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from image_batch.common.errors import UserError

LAST_RUN = Path("results/logs/last-run.json")
# The config keys that together say which sheet a run read (input_sheet: a worksheet's name).
SHEET_KEYS = ("input_csv", "input_sheet")


@dataclass
class ReportSheet:
    settings: dict = field(default_factory=dict)  # config keys to set: empty when the config stands
    note: str = ""  # one line for the user, or ""


def _report_args(argv):
    """Snakemake's parsed command line when ``argv`` asks for a report (``--report`` or
    ``--reporter``), else None."""
    from image_batch.common.snakemake_args import parsed

    args = parsed(argv)
    if args is None:  # an unparseable command line: Snakemake itself will say so
        return None
    wants_report = getattr(args, "report", None) is not None or bool(getattr(args, "reporter", None))
    return args if wants_report and getattr(args, "containerize", None) is None else None


def is_report_run(argv):
    """True when ``argv`` (sys.argv of the snakemake command) only makes a report: ``--report``
    or ``--reporter``, without ``--report-after-run`` (which runs the workflow first)."""
    args = _report_args(argv)
    return args is not None and not getattr(args, "report_after_run", False)


def makes_report(argv):
    """True when ``argv`` makes a report, alone or after a run (``--report-after-run``)."""
    return _report_args(argv) is not None


def report_sheet(config, cli_overrides, argv, record=LAST_RUN):
    """The sheet settings for this invocation: on a report run without ``--config input_csv=...``
    (``cli_overrides``: Snakemake's ``workflow.config_settings.config``), the last run's sheet from
    ``record``; otherwise (a real run, or a sheet named on the command line) the config's."""
    if not is_report_run(argv) or "input_csv" in (cli_overrides or {}):
        return ReportSheet()
    configured = config.get("input_csv")
    try:
        data = json.loads(Path(record).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ReportSheet(note=f"no record of a last run ({record}): the report shows {configured} (config)")
    except (OSError, ValueError) as error:
        return ReportSheet(note=f"{record} is unreadable ({error}): the report shows {configured} (config)")
    sheet = data.get("input_csv") if isinstance(data, dict) else None
    if not isinstance(sheet, str) or not sheet:
        return ReportSheet(note=f"{record} names no input_csv: the report shows {configured} (config)")
    if not Path(sheet).is_file():
        raise UserError(
            f"the last run's sheet {sheet} (recorded in {record}) is not there any more: say which "
            f"sheet's images the report shows with --config input_csv=SHEET"
        )
    settings = {key: data[key] for key in SHEET_KEYS if key in data and key not in (cli_overrides or {})}
    if all(config.get(key) == value for key, value in settings.items()):
        return ReportSheet(settings)
    return ReportSheet(
        settings, f"the report shows the last run's sheet {sheet} (from {record}); --config input_csv=SHEET for another"
    )
