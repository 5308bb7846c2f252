#!/usr/bin/env python3
"""Image.Batch, the classic entry point: ``python main.py input.csv``.

Checks the sheet (clear errors, nothing generated), then runs the Snakemake workflow on it from the
current folder: images go to ./results, settings come from ./config/config.yaml when present (else
the workflow's own) and ./.env. Options may come before or after the sheet; whatever follows ``--``
is added to the Snakemake command (a ``--config`` there is merged with the sheet, never replaces it).

    python main.py my-sheet.csv [--dry-run | --estimate] [--cores N] [--model M] [--size S] [--quality Q]
                   [--mode batch] [--set KEY=VALUE ...] [-- SNAKEMAKE ARGS...]
    python main.py --report report.html [my-sheet.csv]   # the gallery (default: the last run's sheet)
"""

import argparse
import difflib
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "workflow"))

try:  # a Ctrl-C while these load (a second or so): one line, not a traceback
    from image_batch.common.errors import UserError, os_problem
    from image_batch.common.held_signals import held_for_child
    from image_batch.common.settings import (
        api_key,
        config_file_name,
        gemini_api_key,
        load_dotenv_file,
        load_settings,
        read_config_file,
    )
    from image_batch.descriptions.sheet import read_configured_sheet
except KeyboardInterrupt:
    print("\nImage.Batch: stopped (Ctrl-C) before the run started: nothing was paid for", file=sys.stderr)
    sys.exit(130)

LAST_RUN = Path("results/logs/last-run.json")


class Parser(argparse.ArgumentParser):
    """argparse, with "did you mean" for a misspelled option, and where Snakemake's options go."""

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            ours = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            hints = []
            for word in message.split(":", 1)[1].split():
                option = word.split("=", 1)[0]
                if not option.startswith("-"):
                    continue
                near = difflib.get_close_matches(option, ours, n=1, cutoff=0.75)
                if near:
                    hints.append(f"{option}: did you mean {near[0]}?")
                else:
                    hints.append(f"{option}: a Snakemake option goes after --, e.g. python main.py sheet.csv -- {word}")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        super().error(message)


def cores(value):
    """--cores as Snakemake takes it, checked before the sheet is read: 'all' or a whole number of 1
    or more (Snakemake's scheduler starts no job with 0 and waits for ever)."""
    if value.strip().lower() == "all":
        return "all"
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of cores: give a whole number of 1 or more, or all"
        )
    return str(number)


def parser():
    p = Parser(
        prog="main.py",
        description="Generate one image per row of a sheet and sync them to S3 (a Snakemake workflow).",
        epilog="Anything after -- goes to snakemake, e.g.: python main.py my.csv -- --config mode=batch",
    )
    p.add_argument("input_csv", nargs="?", help="the sheet: columns image_id, context, description")
    p.add_argument("--cores", type=cores, default=str(os.cpu_count() or 1), help="Snakemake --cores (default: all)")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be made, make nothing")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the images to make and their estimated cost, live and in batch mode; make nothing",
    )
    p.add_argument("--report", metavar="FILE", help="write the gallery (report.html or report.zip); make nothing")
    settings = p.add_argument_group("settings for this run (override config/config.yaml)")
    settings.add_argument("--model", help="the image model, e.g. gpt-image-2 (the provider's section: openai.model)")
    settings.add_argument("--size", help="image size, e.g. 1536x1024 or auto (provider gemini: 1K, 2K, 4K)")
    settings.add_argument("--quality", help="low, medium, high, auto (and xhigh, max where the model takes them)")
    settings.add_argument("--mode", choices=("live", "batch"), help="batch: half price through the Batch API")
    settings.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any setting, dotted for a section's key: --set openai.background=opaque --set sync.prefix=2026/",
    )
    return p


OPTION_KEYS = {"model": "model", "size": "size", "quality": "quality"}  # provider-section settings
# ... named otherwise in a provider's section (None: that provider has no such setting)
SECTION_KEYS = {"gemini": {"size": "image_size", "quality": None}}


def option_overrides(args, config):
    """The settings named by main.py's own options, as dotted KEY=VALUE items (the provider's
    section for --model/--size/--quality: the configured provider's; when it is auto, the one auto
    picks: openai, or gemini when only a Gemini key is set)."""
    provider = str(config.get("provider") or "auto")
    section = "openai" if provider in ("auto", "offline") else provider
    if provider == "auto" and not api_key() and gemini_api_key():
        section = "gemini"  # what auto picks with a Gemini key alone (common.settings.resolve)
    items = []
    for option, key in OPTION_KEYS.items():
        if not getattr(args, option):
            continue
        key = SECTION_KEYS.get(section, {}).get(option, key)
        if key is None:
            raise UserError(
                f"--{option}: {section} takes no {option} (its settings: {section}.model, {section}.image_size, "
                f"{section}.aspect_ratio; e.g. --size 2K, --set {section}.aspect_ratio=16:9)"
            )
        items.append(f"{section}.{key}={getattr(args, option)}")
    if args.mode:
        items.append(f"mode={args.mode}")
    return items + list(args.set)


def split_argv(argv):
    """(our arguments, Snakemake's): everything after the first ``--`` is Snakemake's."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def take_config(args):
    """(the KEY=VALUE items of every --config/-C in Snakemake ``args``, the other args)."""
    items, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-C"):
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                items.append(args[i])
                i += 1
            continue
        if arg.startswith("--config="):
            items.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return items, rest


def same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def config_file():
    local = Path("config/config.yaml")
    return local if local.is_file() else REPO / "config" / "config.yaml"


def last_run_sheet():
    try:
        return json.loads(LAST_RUN.read_text(encoding="utf-8")).get("input_csv")
    except (OSError, ValueError, AttributeError):
        return None


MALFORMED = "--set or --config {!r}: expected KEY=VALUE (a section's key dotted: openai.model=...)"


def overrides(items):
    """--config KEY=VALUE items as a dict (values as YAML, as Snakemake reads them). A dotted key
    sets one key of a section (``openai.model=gpt-image-2``), leaving the section's others as they
    are."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(MALFORMED.format(item))
        try:
            value = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            pass
        *sections, name = key.split(".")
        if not all(sections) or not name:
            raise UserError(MALFORMED.format(item))
        where = out
        for section in sections:
            where = where.setdefault(section, {})
            if not isinstance(where, dict):
                raise UserError(f"--config {item!r}: {section} is set to a value and used as a section")
        where[name] = value
    return out


def merged(base, changes):
    """``base`` with ``changes``, sections merged key by key (as Snakemake merges --config)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_items(given):
    """--config items Snakemake takes for ``given``: a section as a YAML mapping, merged by Snakemake
    into the config file's section (Snakemake refuses dotted keys)."""
    import yaml

    items = []
    for key, value in given.items():
        if isinstance(value, dict):
            value = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
        elif value is None:
            value = ""
        items.append(f"{key}={value}")
    return items


def snakemake_command(args, configfile, config_items, extra):
    command = [sys.executable, "-m", "snakemake", "--cores", args.cores]
    if Path.cwd().resolve() != REPO:
        command += ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(configfile)]
    if args.dry_run or args.estimate:
        command.append("--dry-run")
    if args.report:
        command += ["--report", args.report]
    return command + extra + ["--config", *config_items]


def _die_with(parent):
    """In the run's process, before Snakemake starts (Linux): killed when main.py (``parent``) dies.
    The run has a process group of its own (for Ctrl-C, below), so a kill -9 of main.py's group would
    leave it running alone, holding the folder's lock, and the same command run again would be refused."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the run outlives a killed main.py, as before
    if os.getppid() != parent:  # main.py died before the line above
        os._exit(137)


def run_child(command, capture=False):
    """Run ``command`` (Snakemake) to its end; (its exit code, its output when ``capture``).

    Ctrl-C and SIGTERM are passed on once to the run, which decides (the first finishes and keeps the
    calls in flight, a second abandons them) and prints its summary: this process waits for it, then
    exits 130 (Ctrl-C) or 143 (SIGTERM). The run has a process group of its own, so a Ctrl-C at the
    terminal, which reaches only this process now, gets to it once, as does a SIGTERM to this process
    alone (``docker stop``: this is the container's PID 1) or to its group (a preempted cluster job)."""
    received, pending, child = [], [], []

    def forward(signum, frame):
        received.append(signum)
        if not child:
            pending.append(signum)  # passed on as soon as the run has started
            return
        try:
            os.killpg(child[0].pid, signum)
        except ProcessLookupError:
            pass

    output = subprocess.PIPE if capture else None
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The run starts with Ctrl-C and SIGTERM blocked, and takes them once its Snakefile has put
        # its own handlers in (image_batch.run.interrupt.install_early): one that comes while
        # Snakemake imports itself waits for them, instead of a KeyboardInterrupt traceback.
        with held_for_child():
            child.append(
                subprocess.Popen(
                    command,
                    stdout=output,
                    stderr=output,
                    text=capture,
                    process_group=0,
                    preexec_fn=partial(_die_with, os.getpid()),
                )
            )
        for signum in pending:
            os.killpg(child[0].pid, signum)
        out, err = child[0].communicate()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = 128 + received[0] if received else child[0].returncode
    return code, (out or "") + (err or "")


def main(argv=None):
    ours, extra = split_argv(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_intermixed_args(ours)
    configfile = config_file()
    try:
        load_dotenv_file(".env")
        items, extra = take_config(extra)
        items = option_overrides(args, read_config_file(configfile)) + items
        given = overrides(items)
        sheet = args.input_csv
        if sheet is None:
            if not args.report:
                raise UserError("name the sheet to use: python main.py my-sheet.csv (see --help)")
            sheet = given.get("input_csv") or last_run_sheet()
        if "input_csv" in given and sheet is not None and not same_file(str(given["input_csv"]), sheet):
            raise UserError(
                f"the sheet is given twice: {sheet} and --config input_csv={given['input_csv']}; give it once"
            )
        config = merged(read_config_file(configfile), given)
        if sheet is not None:
            config["input_csv"] = sheet
        settings = load_settings(config, given, config_file_name([configfile]))
        rows = read_configured_sheet(settings)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {os_problem(error)}", file=sys.stderr)
        return 2
    # (the sheet is read and its cells are text; each row's settings and pictures are checked by the
    # workflow next, so this line says "read", not "OK")
    print(f"{settings.input_csv}: {len(rows)} row(s) read", file=sys.stderr)
    given = {key: value for key, value in given.items() if key != "input_csv"}
    command = snakemake_command(args, configfile, [f"input_csv={settings.input_csv}", *config_items(given)], extra)
    if args.estimate:  # the workflow's own lines from a dry run: the plan and the estimate
        code, output = run_child(command, capture=True)
        lines = [line for line in output.splitlines() if line.startswith("Image.Batch:")]
        print("\n".join(lines) if code == 0 else output)
        return code
    return run_child(command)[0]


class Terminated(Exception):
    """SIGTERM before the run started."""


def _terminated(signum, frame):
    raise Terminated


def entry():
    """``main`` with Ctrl-C and SIGTERM before the run starts (while the sheet is read) ending it with
    one line, not a traceback (the run itself handles them: :func:`run_child`)."""
    signal.signal(signal.SIGTERM, _terminated)  # as PID 1 of a container SIGTERM is otherwise ignored
    try:
        return main()
    except (KeyboardInterrupt, Terminated) as stop:
        name, code = ("SIGTERM", 143) if isinstance(stop, Terminated) else ("Ctrl-C", 130)
        print(f"\nImage.Batch: stopped ({name}) before the run started: nothing was paid for", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(entry())
