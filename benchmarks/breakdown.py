"""Where a dry run's time goes: one dry run under cProfile, its time sorted into the parts issue 19
names, and the file-system calls counted. benchmarks/run.py prints it for the workflow and for the
bare floor of the same size (the floor's DAG time is Snakemake's own cost for one-file jobs, so the
workflow's DAG time beyond it is what this workflow's shape costs Snakemake).

    python benchmarks/breakdown.py PROJECT_DIR -- -n --quiet --cores 8 --config input_csv=input.csv

cProfile slows Python code about twofold, unevenly: the parts are shown as shares of the profiled
run and, scaled by them, as seconds of the unprofiled run when its time is given (--seconds).
"""

import argparse
import os
import pstats
import subprocess
import sys
import tempfile

# Our planning, by step: (label, function names of workflow/image_batch matched on "file:function")
PLANNING = [
    ("sheet read", ["descriptions/sheet.py:read_configured_sheet"]),
    ("specs (rows -> requests)", ["descriptions/specs.py:build_specs"]),
    ("request planning (listings, image times)", ["descriptions/specs.py:plan_requests"]),
    ("estimate (+ response store look-ups)", ["image_batch/plan.py:_estimate"]),
    ("catalogue checks", ["image_batch/plan.py:check_models"]),
    ("writable checks", ["common/fileio.py:unwritable", "common/fileio.py:unwritable_file"]),
    ("sync chunks (pages, missing PNGs)", ["sync/chunks.py:assign", "sync/chunks.py:missing_behind"]),
    ("removed rows (listing results/images)", ["image_batch/plan.py:removed_rows"]),
    (
        "contact sheets (pages, member files)",
        ["common/pages.py:paginate", "report/contact_sheet.py:member_files"],
    ),
]
SNAKEFILE = ("<module>",)
FS_CALLS = ["posix.stat", "posix.lstat", "posix.scandir", "posix.access", "posix.listdir", "io.open", "posix.open"]


def _match(key, names):
    filename, _, function = key
    return any(filename.endswith(name.split(":")[0]) and function == name.split(":")[1] for name in names)


def _cum(stats, names):
    """Cumulative seconds of the functions ``names`` (not double-counting a recursive call)."""
    return sum(value[3] for key, value in stats.stats.items() if _match(key, names))


def _calls(stats, builtin):
    """(all calls, calls made from Snakemake's own code) of a builtin such as posix.stat."""
    total = snakemake = 0
    for key, value in stats.stats.items():
        if key[2] == f"<built-in method {builtin}>":
            total += value[1]
            snakemake += sum(counts[1] for caller, counts in value[4].items() if "/snakemake/" in caller[0])
    return total, snakemake


def profile(cwd, args, env=None):
    """pstats.Stats of ``snakemake ARGS`` run in ``cwd`` under cProfile."""
    with tempfile.NamedTemporaryFile(suffix=".prof", delete=False) as handle:
        out = handle.name
    cmd = [sys.executable, "-m", "cProfile", "-o", out, "-m", "snakemake", *args]
    subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    stats = pstats.Stats(out)
    os.unlink(out)
    return stats


def _per_job(stats):
    """Seconds in the rules' input functions and report() label functions (called per job)."""
    inputs = labels = 0
    for (filename, _, function), value in stats.stats.items():
        if filename.endswith((".smk", "Snakefile")) and function in ("<lambda>", "chunk_images"):
            inputs += value[3]
        if filename.endswith("report/gallery.py") and function in (
            "context",
            "labels",
            "sheet_context",
            "sheet_labels",
        ):
            labels += value[3]
    return inputs, labels


def parts(stats):
    """{part: seconds of the profiled run}, and {builtin: (calls, from Snakemake)} of file-system calls."""
    total = max(value[3] for value in stats.stats.values())
    snakefile = sum(v[3] for key, v in stats.stats.items() if key[0].endswith("/Snakefile") and key[2] in SNAKEFILE)
    plan = _cum(stats, ["image_batch/plan.py:make_plan", *PLANNING[-1][1]])
    inputs, labels = _per_job(stats)
    out = {"total (profiled)": total, "reading the Snakefile (imports, settings, planning)": snakefile}
    if plan:
        out["  our planning (make_plan, contact sheet pages)"] = plan
        for label, names in PLANNING:
            out[f"    {label}"] = _cum(stats, names)
    out["Snakemake's DAG (jobs, needrun, checks)"] = _cum(stats, ["snakemake/workflow.py:_build_dag"])
    out["  input functions (the rules' lambdas, per job)"] = inputs
    out["  report() labels (per job)"] = labels
    fs = {name: _calls(stats, name) for name in FS_CALLS}
    return out, {name: counts for name, counts in fs.items() if counts[0]}


def show(label, stats, seconds=None, out=sys.stdout):
    """Print the parts of a profiled run (with ``seconds``, the unprofiled run's, scaled)."""
    figures, fs = parts(stats)
    total = figures["total (profiled)"]
    scale = (seconds / total) if seconds else None
    unit = ", ~seconds unprofiled" if scale else ", seconds profiled"
    print(f"  breakdown, {label} (cProfile: share of the profiled run{unit})", file=out)
    for name, value in figures.items():
        seconds_shown = value * scale if scale else value
        print(f"    {name:<56} {value / total:6.1%}  {seconds_shown:6.1f} s", file=out)
    calls = ", ".join(f"{name.split('.')[-1]} {n:,} ({mine:,} Snakemake's)" for name, (n, mine) in fs.items())
    print(f"    file-system calls (Python level; the rest: ours, the libraries'): {calls}", file=out)
    return {"parts": figures, "fs_calls": fs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project")
    parser.add_argument("--seconds", type=float, help="the unprofiled run's wall time, to scale the shares")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    show(args.project, profile(args.project, rest), args.seconds)


if __name__ == "__main__":
    main()


PLANNING_FS = """
import builtins, collections, os, sys
sys.path.insert(0, "workflow")
counts = collections.Counter()
def counted(name, function):
    def call(*args, **kwargs):
        counts[name] += 1
        return function(*args, **kwargs)
    return call
for name in ("stat", "lstat", "access", "scandir", "listdir"):
    setattr(os, name, counted(name, getattr(os, name)))
builtins.open = counted("open", builtins.open)
from image_batch.common.settings import load_dotenv_file, load_settings, read_config_file
from image_batch.plan import make_plan
load_dotenv_file(".env")
make_plan(load_settings({**read_config_file("config/config.yaml"), "input_csv": sys.argv[1]}), announce=True)
print(dict(counts))
"""


def planning_fs_calls(project, sheet="input.csv", env=None):
    """{call: count} of the file-system calls our planning (make_plan, as the Snakefile calls it)
    makes in ``project``, counted in Python (os.stat, os.access, open, ...) in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-c", PLANNING_FS, sheet], cwd=project, env=env, capture_output=True, text=True, check=True
    )
    import ast

    return ast.literal_eval(out.stdout.strip().splitlines()[-1])
