#!/usr/bin/env python3
"""Image.Batch, the classic entry point: ``python main.py input.csv``.

Checks the sheet (clear errors, nothing generated), then runs the Snakemake workflow on it from
the current folder: images go to ./results, settings come from ./config/config.yaml when present
(else the workflow's own) and ./.env.  Extra arguments after ``--`` go to Snakemake as they are.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "workflow"))

from image_batch.common.errors import UserError  # noqa: E402
from image_batch.common.settings import load_dotenv_file  # noqa: E402
from image_batch.descriptions.sheet import read_sheet  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Generate one image per row of a CSV sheet and sync them to S3.")
    parser.add_argument("input_csv", help="the sheet: columns image_id, context, description")
    parser.add_argument("--cores", default=str(os.cpu_count() or 1), help="Snakemake --cores (default: all)")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would be made, make nothing")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the images to make and their estimated cost, live and in batch mode; make nothing",
    )
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="after --: passed to Snakemake")
    return parser.parse_args(argv)


def config_file():
    local = Path("config/config.yaml")
    return local if local.is_file() else REPO / "config" / "config.yaml"


def snakemake_command(args, configfile):
    command = [sys.executable, "-m", "snakemake", "--cores", args.cores, "--config", f"input_csv={args.input_csv}"]
    if Path.cwd().resolve() != REPO:
        command += ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(configfile)]
    if args.dry_run or args.estimate:
        command.append("--dry-run")
    extra = args.snakemake_args
    if extra and extra[0] == "--":
        extra = extra[1:]
    return command + extra


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    load_dotenv_file(".env")
    configfile = config_file()
    config = yaml.safe_load(configfile.read_text(encoding="utf-8")) or {}
    try:
        rows = read_sheet(args.input_csv, config.get("max_prompt_chars", 32000))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.input_csv}: {len(rows)} rows OK", file=sys.stderr)
    if args.estimate:  # the workflow's own lines from a dry run: the plan and the estimate
        done = subprocess.run(snakemake_command(args, configfile), capture_output=True, text=True)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Image.Batch:")]
        print("\n".join(lines) if done.returncode == 0 else done.stdout + done.stderr)
        return done.returncode
    return subprocess.call(snakemake_command(args, configfile))


if __name__ == "__main__":
    sys.exit(main())
