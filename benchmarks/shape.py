"""What the workflow's shape costs Snakemake itself (issue 19): bare Snakemake's dry run of N image
jobs, adding the workflow's features one at a time, each against the floor (benchmarks/floor: one
output and a log per job) in the same call. No workflow code runs: what a step adds is Snakemake's
own work for that feature, which no change to our planning can remove.

    python benchmarks/shape.py --rows 10000 [--repeat 3]

The steps, in order (each keeps the ones before):
  floor             one output and a log per job; `all` asks for every output
  + page digests    the sync's chunk jobs, one per page of 100 images, take their PNGs; `all` asks
                    for the digests
  + contact sheets  one job per page takes the page's digest (the shape of a fresh or unchanged plan)
  + input function  one input function per image job (unpack-ed, its parameters read once) that
                    returns {} (an up-to-date image's job in a plan with an edited row)
Then the forms the workflow had before:
  hash chunks + sheets on PNGs   chunks by a prefix of the ids' hash (16^k of them, about 100
                                 images or fewer each) and the sheets each taking their 100 PNGs:
                                 two jobs after each image
  floor + sidecar                a second declared output per image job (with a storage provider,
                                 still the workflow's)
  floor + empty-named inputs     the input function returning names with empty lists
                                 ({'spec': [], 'references': []})

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

import math  # noqa: E402

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
# (name, features): the ladder's steps, each keeping the ones before, then the former forms
STEPS = [
    ("floor", set()),
    ("+ page digests", {"pages"}),
    ("+ contact sheets", {"pages", "sheets"}),
    ("+ input function", {"pages", "sheets", "function"}),
]
FORMER = [
    ("hash chunks + sheets on PNGs", {"chunks", "png-sheets"}),
    ("floor + sidecar", {"sidecar"}),
    ("floor + empty-named inputs", {"function", "empty-names"}),
]


def chunk_count(n):
    """As many hash chunks as the workflow's sync made before its chunks were pages: 16^k, the
    fewest with 100 images or fewer each."""
    return 16 ** math.ceil(math.log(n / 100, 16)) if n > 100 else 1


def snakefile(features):
    """A bare Snakefile with ``features`` (see STEPS and FORMER)."""
    sidecar, function, chunks, pages = (name in features for name in ("sidecar", "function", "chunks", "pages"))
    sheets = "sheets" in features or "png-sheets" in features
    targets = ["expand('out/{i}.png', i=range(N))"]
    if chunks:
        targets = ["expand('chunks/{c}.json', c=range(C))"]
    if pages:
        targets = ["expand('pages/{p}.json', p=range(P))"]
    if sheets:
        targets.append("expand('sheets/{s}.jpg', s=range(P))")
    text = [
        "N = int(config['rows'])",
        "C = int(config['chunks'])" if chunks else "C = 1",
        "P = (N + 99) // 100",
        "",
        "rule all:",
        "    input:",
        *(f"        {target}," for target in targets),
        "",
        "rule image:",
    ]
    if function:  # its parameters read once, as the workflow's (image_batch.common.input_functions)
        returned = "{'spec': [], 'references': []}" if "empty-names" in features else "{}"
        text[:0] = [
            "import inspect",
            "from snakemake.common import overwrite_function_params",
            "def inputs(wildcards):",
            f"    return {returned}",
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
    page_pngs = "[f'out/{i}.png' for i in range(100 * int(w.p), min(N, 100 * (int(w.p) + 1)))]"
    if chunks:
        text += [
            "rule chunk:",
            "    input:",
            "        lambda w: [f'out/{i}.png' for i in range(int(w.c), N, C)],",
            "    output:",
            "        'chunks/{c}.json',",
            "    log:",
            "        'logs/chunks/{c}.log',",
            "    run:",
            "        open(output[0], 'w').close()",
            "",
        ]
    if pages:
        text += [
            "rule page:",
            "    input:",
            f"        lambda w: {page_pngs},",
            "    output:",
            "        'pages/{p}.json',",
            "    log:",
            "        'logs/pages/{p}.log',",
            "    run:",
            "        open(output[0], 'w').close()",
            "",
        ]
    if sheets:
        source = "'pages/{p}.json'" if pages else f"lambda w: {page_pngs}"
        text += [
            "rule sheet:",
            "    input:",
            f"        {source},",
            "    output:",
            "        'sheets/{p}.jpg',",
            "    log:",
            "        'logs/sheets/{p}.log',",
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
    """Each step's and former form's (name, CPU seconds, peak MB), the floor's first; printed as
    they come."""
    shapes = STEPS + FORMER
    roots = []
    for index, (_, features) in enumerate(shapes):
        root = RUNS / f"shape-{n}-{index}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        (root / "Snakefile").write_text(snakefile(features))
        roots.append(root)
    runs = [[] for _ in shapes]
    for _ in range(repeat):  # the shapes in turn, so that a slow minute of the machine moves all alike
        for index, root in enumerate(roots):
            runs[index].append(dry_run(root, n))
    out = []
    show(f"  Snakemake's own cost of the workflow's shape: bare dry runs of {n:,} image jobs ({repeat} run(s) each)")
    for index, (name, _) in enumerate(shapes):
        cpu = statistics.median(r[0] for r in runs[index])
        mem = statistics.median(r[1] for r in runs[index])
        out.append((name, cpu, mem))
        floor_cpu, floor_mem = out[0][1], out[0][2]
        if index == len(STEPS):
            show("  the forms the workflow had before, each on the floor alone:")
        before = out[index - 1][1] if 0 < index < len(STEPS) else floor_cpu
        added = f"  (step {cpu - before:+.2f} s)" if index else ""
        show(f"    {name:<26} {cpu:6.2f} s CPU {cpu / floor_cpu:5.2f}x   {mem:6.0f} MB {mem / floor_mem:5.2f}x{added}")
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
