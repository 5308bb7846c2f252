"""What the workflow's shape costs Snakemake itself (issue 19): bare Snakemake's dry run of N image
jobs, adding the workflow's features one at a time, each against the floor (benchmarks/floor: one
output and a log per job) in the same call. No workflow code runs: what a step adds is Snakemake's
own work for that feature, which no change to our planning can remove.

    python benchmarks/shape.py --rows 10000 [--repeat 3]

The steps, in order (each keeps the ones before):
  floor             one output and a log per job; `all` asks for every output
  + sidecar         a second output per image job (the workflow's PNG and sidecar)
  + input function  one input function per image job (unpack of a dict, as the workflow's, its
                    parameters read once), returning no files
  + sync chunks     the sync's chunk jobs (as many as the workflow makes) take each image's two
                    outputs; `all` asks for the chunks
  + contact sheets  one job per 100 images takes their PNGs

Figures: CPU seconds (user + system: less moved by other processes than wall time) and peak memory
of each dry run, the median of --repeat runs.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
sys.path.insert(0, str(HERE.parent / "workflow"))

from image_batch.sync.chunks import digits_for  # noqa: E402

# Snakemake's best flags for many small jobs: every floor of the benchmarks runs with them (run.py)
FLOOR_FLAGS = [
    "--force-use-threads",
    "--max-jobs-per-timespan",
    "100000/1s",
    "--scheduler",
    "greedy",
    "--scheduler-subsample",
    "100",
    "--cores",
    "32",
    "--drop-metadata",
]
STEPS = ["floor", "+ sidecar", "+ input function", "+ sync chunks", "+ contact sheets"]


def chunk_count(n):
    """As many chunks as the workflow's sync makes for n images (image_batch.sync.chunks)."""
    return 16 ** digits_for(n)


def snakefile(step):
    """The Snakefile of ``step`` (an index into STEPS)."""
    sidecar, function, chunks, sheets = (step >= k for k in range(1, 5))
    targets = ["expand('chunks/{c}.json', c=range(C))"] if chunks else ["expand('out/{i}.png', i=range(N))"]
    if sheets:
        targets.append("expand('sheets/{s}.jpg', s=range((N + 99) // 100))")
    text = [
        "N = int(config['rows'])",
        "C = int(config['chunks'])" if chunks else "C = 1",
        "",
        "rule all:",
        "    input:",
        *(f"        {target}," for target in targets),
        "",
        "rule image:",
    ]
    if function:  # its parameters read once, as the workflow's (image_batch.common.input_functions)
        text[:0] = [
            "import inspect",
            "from snakemake.common import overwrite_function_params",
            "def inputs(wildcards):",
            "    return {'spec': [], 'references': []}",
            "overwrite_function_params(inputs, inspect.signature(inputs).parameters)",
        ]
        text += ["    input:", "        unpack(inputs),"]
    text += ["    output:", "        png='out/{i}.png',"]
    if sidecar:
        text.append("        sidecar='out/{i}.json',")
    text += [
        "    log:",
        "        'logs/{i}.log',",
        "    run:",
        "        for path in output:",
        "            open(path, 'w').close()",
        "",
    ]
    kinds = "('png', 'json')" if sidecar else "('png',)"
    if chunks:
        text += [
            "rule chunk:",
            "    input:",
            f"        lambda w: [f'out/{{i}}.{{k}}' for i in range(int(w.c), N, C) for k in {kinds}],",
            "    output:",
            "        'chunks/{c}.json',",
            "    log:",
            "        'logs/chunks/{c}.log',",
            "    run:",
            "        open(output[0], 'w').close()",
            "",
        ]
    if sheets:
        text += [
            "rule sheet:",
            "    input:",
            "        lambda w: [f'out/{i}.png' for i in range(100 * int(w.s), min(N, 100 * (int(w.s) + 1)))],",
            "    output:",
            "        'sheets/{s}.jpg',",
            "    log:",
            "        'logs/sheets/{s}.log',",
            "    run:",
            "        open(output[0], 'w').close()",
            "",
        ]
    return "\n".join(text)


def dry_run(root, n):
    """CPU seconds and peak MB of one dry run in ``root``."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--quiet",
        *FLOOR_FLAGS,
        "--config",
        f"rows={n}",
        f"chunks={chunk_count(n)}",
    ]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    error = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"shape benchmark: the dry run in {root} failed:\n{error}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def ladder(n, repeat=1, show=print):
    """Each step's (name, CPU seconds, peak MB), the floor's first; printed as they come."""
    roots = []
    for step in range(len(STEPS)):
        root = RUNS / f"shape-{n}-{step}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "Snakefile").write_text(snakefile(step))
        roots.append(root)
    runs = [[] for _ in STEPS]
    for _ in range(repeat):  # the steps in turn, so that a slow minute of the machine moves all alike
        for step, root in enumerate(roots):
            runs[step].append(dry_run(root, n))
    out = []
    show(f"  Snakemake's own cost of the workflow's shape: bare dry runs of {n:,} image jobs ({repeat} run(s) each)")
    for step, name in enumerate(STEPS):
        cpu = statistics.median(r[0] for r in runs[step])
        mem = statistics.median(r[1] for r in runs[step])
        out.append((name, cpu, mem))
        floor_cpu, floor_mem = out[0][1], out[0][2]
        added = f"  (step {cpu - out[step - 1][1]:+.2f} s)" if step else ""
        show(f"    {name:<18} {cpu:6.2f} s CPU {cpu / floor_cpu:5.2f}x   {mem:6.0f} MB {mem / floor_mem:5.2f}x{added}")
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    ladder(args.rows, args.repeat)


if __name__ == "__main__":
    main()
