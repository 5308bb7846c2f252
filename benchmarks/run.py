#!/usr/bin/env python3
"""Image.Batch benchmark suite: the workflow against bare Snakemake at its best flags, the stand-in
OpenAI server and moto's S3 server on loopback, all in one run. Prints a table of figures and ratios.

    python benchmarks/run.py                      # every target at the sizes in the README
    python benchmarks/run.py --targets 1 --sizes 2000   # a quick look

Targets (issues 4 and 19): 1) 10,000 rows vs the floor (full run, no-op rerun, fresh and warm
dry-run, peak memory), with where a dry run's time goes (benchmarks/breakdown.py: our planning,
Snakemake's DAG, per-job functions, file-system calls, beside the floor's own) and what each feature
of the workflow's shape costs Snakemake itself (benchmarks/shape.py); 2) 100,000-row fresh
and warm dry-run vs the floor's dry run of as many jobs, and per-image time at growing sizes;
3) throughput against a rate-limited stand-in; 4) first sync and no-op resync of the 1,632 parti
prompts vs `aws s3 sync`. Every ratio is to a floor measured in the same run.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = HERE / "runs"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import breakdown  # noqa: E402
import shape  # noqa: E402

from tests.conftest import copy_workflow  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.moto_s3 import MotoS3, scrubbed_environ  # noqa: E402

KEY = "sk-bench-0000000000000000"
# The stand-in's images: 64x64, the size the README's figures were measured with (it answers the size asked for
# by default); the figures measure the workflow's overhead, not image decoding.
RENDER = (64, 64)
FLOOR_FLAGS = shape.FLOOR_FLAGS
PARTI = REPO.parent / "shared" / "data" / "parti-prompts.csv"
CONTEXTS = [
    "Animals",
    "Food & Beverage",
    "Vehicles",
    "World Knowledge",
    "Abstract",
    "Artifacts",
    "Illustrations",
    "Indoor Scenes",
    "Outdoor Scenes",
    "People",
    "Produce & Plants",
    "Arts",
]


def snakemake_cmd(*args):
    return [sys.executable, "-m", "snakemake", *args]


def measure(cmd, cwd, env, label):
    """Run ``cmd``; return (seconds, peak RSS in MB of the process tree's largest process)."""
    log = RUNS / "logs" / f"{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label} failed (exit {status}); see {log}")
    return seconds, usage.ru_maxrss / 1024


def write_sheet(path, n):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "context", "description"])
        for i in range(n):
            writer.writerow([f"img{i:06d}", CONTEXTS[i % len(CONTEXTS)], f"benchmark prompt {i}: a lighthouse at dusk"])


def floor(n, variant="floor"):
    """Bare Snakemake at its best flags: full run, no-op rerun, fresh dry-run, peak memory.
    ``variant`` "floor-shaped" gives each job the workflow's file shape (input, 2 outputs, log)."""
    root = RUNS / f"{variant}-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(HERE / variant / "Snakefile", root / "Snakefile")
    if variant == "floor-shaped":
        (root / "spec").mkdir()
        for i in range(n):
            (root / "spec" / f"{i}.json").write_text("{}")
    env = scrubbed_environ()
    cfg = ["--config", f"rows={n}"]
    dry, dry_mem = measure(snakemake_cmd("-n", "--quiet", *FLOOR_FLAGS, *cfg), root, env, f"{variant}-{n}-dry")
    full, full_mem = measure(snakemake_cmd(*FLOOR_FLAGS, *cfg), root, env, f"{variant}-{n}-full")
    noop, _ = measure(snakemake_cmd(*FLOOR_FLAGS, *cfg), root, env, f"{variant}-{n}-noop")
    return {"full": full, "noop": noop, "dry": dry, "mem": max(full_mem, dry_mem), "dry_mem": dry_mem}


def floor_dry(n, profile=False, variant="floor"):
    """The floor's fresh dry run of ``n`` jobs alone: (seconds, peak MB, breakdown or None).
    ``variant`` "floor-gc": with the workflow's garbage-collector settings (not a target)."""
    root = RUNS / f"{variant}-dry-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(HERE / variant / "Snakefile", root / "Snakefile")
    args = ["-n", "--quiet", *FLOOR_FLAGS, "--config", f"rows={n}"]
    dry, mem = measure(snakemake_cmd(*args), root, scrubbed_environ(), f"{variant}-dry-{n}")
    parts = breakdown.show(f"floor, {n:,} jobs, dry run", breakdown.profile(root, args), dry) if profile else None
    shutil.rmtree(root, ignore_errors=True)
    return dry, mem, parts


def workflow_project(name, n=None, sheet=None):
    root = RUNS / name
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    copy_workflow(root)
    if sheet:
        shutil.copy(sheet, root / "input.csv")
    else:
        write_sheet(root / "input.csv", n)
    return root


DRY = ["-n", "--quiet"]


def workflow(n, api, extra_env=None, label=None, profile=False):
    """The workflow as a user runs it (`snakemake --cores 8`, profile defaults) on ``n`` rows."""
    label = label or f"workflow-{n}"
    root = workflow_project(label, n)
    env = {**scrubbed_environ(), "AI_API_KEY": KEY, "OPENAI_BASE_URL": api.base_url, **(extra_env or {})}
    cfg = ["--cores", "8", "--config", "input_csv=input.csv"]
    api.reset()
    dry, dry_mem = measure(snakemake_cmd("-n", "--quiet", *cfg), root, env, f"{label}-dry")
    parts = None
    if profile:
        parts = breakdown.show(f"workflow, {n:,} rows, fresh dry run", breakdown.profile(root, DRY + cfg, env), dry)
        parts["planning_fs_calls"] = breakdown.planning_fs_calls(root, env=env)
        print(f"    file-system calls of our planning alone (fresh): {parts['planning_fs_calls']}")
    full, full_mem = measure(snakemake_cmd(*cfg), root, env, f"{label}-full")
    calls = len(api.calls)
    noop, _ = measure(snakemake_cmd(*cfg), root, env, f"{label}-noop")
    warm, warm_mem = measure(snakemake_cmd("-n", "--quiet", *cfg), root, env, f"{label}-warm-dry")
    if profile:
        parts_warm = breakdown.show(
            f"workflow, {n:,} rows, warm dry run", breakdown.profile(root, DRY + cfg, env), warm
        )
        parts_warm["planning_fs_calls"] = breakdown.planning_fs_calls(root, env=env)
        print(f"    file-system calls of our planning alone (warm): {parts_warm['planning_fs_calls']}")
        parts = {"fresh": parts, "warm": parts_warm}
    stats = api.stats()
    return {
        "full": full,
        "noop": noop,
        "dry": dry,
        "warm_dry": warm,
        "breakdown": parts,
        "mem": max(dry_mem, full_mem),
        "calls": calls,
        "noop_calls": len(api.calls) - calls,
        "429": stats["status_429"],
        "root": root,
    }


def row(name, value, floor_value=None, target=None, unit="s"):
    ratio = f"{value / floor_value:.2f}x" if floor_value else ""
    verdict = ""
    if target is not None and floor_value:
        verdict = "OK" if value / floor_value <= target else f"MISS (target <= {target}x)"
    shown = f"{value:.1f} {unit}" if unit else f"{value}"
    print(f"  {name:<44} {shown:>12} {ratio:>8}  {verdict}")


def target1(api, n):
    print(f"\nTarget 1: {n:,} rows, zero-latency stand-in, local sync, vs bare Snakemake (same size, best flags)")
    f = floor(n)
    shaped = floor(n, "floor-shaped")
    print("  where a dry run's time goes (the floor's first: its DAG time is Snakemake's own for one-file jobs)")
    floor_dry(n, profile=True)
    w = workflow(n, api, profile=True)
    print(f"  {'':<44} {'workflow':>12} {'/floor':>8}  (issue 19 targets)")
    row("full run", w["full"], f["full"], 2.5)
    row("no-op rerun", w["noop"], f["noop"], 1.3)
    row("fresh --dry-run", w["dry"], f["dry"], 1.3)
    row("warm --dry-run (nothing changed)", w["warm_dry"], f["dry"], 1.3)
    row("peak memory", w["mem"], f["mem"], 1.5, unit="MB")
    print(f"  floor: full {f['full']:.1f} s, no-op {f['noop']:.1f} s, dry-run {f['dry']:.1f} s, {f['mem']:.0f} MB")
    print(
        f"  same-shape floor (1 input, 2 outputs, log per job; explains the gap, not a target): full "
        f"{shaped['full']:.1f} s ({shaped['full'] / f['full']:.2f}x), no-op {shaped['noop']:.1f} s "
        f"({shaped['noop'] / f['noop']:.2f}x), dry-run {shaped['dry']:.1f} s ({shaped['dry'] / f['dry']:.2f}x), "
        f"{shaped['mem']:.0f} MB"
    )
    print(
        f"  per-image overhead: workflow {1000 * w['full'] / n:.2f} ms, floor {1000 * f['full'] / n:.2f} ms; "
        f"API calls {w['calls']} (no-op rerun: {w['noop_calls']}), 429s {w['429']}"
    )
    ladder = shape.ladder(n)
    out = {"floor": f, "floor_shaped": shaped, "workflow": {k: v for k, v in w.items() if k != "root"}}
    return {**out, "shape": [{"step": name, "cpu": cpu, "mb": mb} for name, cpu, mb in ladder]}


def write_made(root, env):
    """Leave ``root`` as a finished run would, without a run: every image's request file, a PNG and
    a sidecar newer than it (what planning looks at), in one process."""
    script = """
import os, sys, time
sys.path.insert(0, "workflow")
from image_batch.common.settings import load_settings, read_config_file
from image_batch.descriptions.specs import image_files, write_request
from image_batch.plan import make_plan
plan = make_plan(load_settings({**read_config_file("config/config.yaml"), "input_csv": "input.csv"}), announce=False)
for image in plan.images:
    write_request(plan.spec_of(*image), plan.requests.paths[image])
later = time.time() + 1
for image in plan.images:
    for path in image_files(*image):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (later, later))
"""
    subprocess.run([sys.executable, "-c", script], cwd=root, env=env, check=True)


def target2(api, sizes, dry_size, warm_dry=True):
    print(
        f"\nTarget 2: scale. --dry-run of {dry_size:,} rows vs bare Snakemake's of {dry_size:,} jobs (same run; "
        "targets 1.2x, memory 1.5x), and per-image time by size"
    )
    floor_seconds, floor_mem, _ = floor_dry(dry_size)
    root = workflow_project(f"dry-{dry_size}", dry_size)
    env = {**scrubbed_environ(), "AI_API_KEY": KEY, "OPENAI_BASE_URL": api.base_url}
    cfg = ["-n", "--quiet", "--cores", "8", "--config", "input_csv=input.csv"]
    dry, mem = measure(snakemake_cmd(*cfg), root, env, f"dry-{dry_size}")
    row(f"fresh --dry-run, {dry_size:,} rows", dry, floor_seconds, 1.2)
    row("  its peak memory", mem, floor_mem, 1.5, unit="MB")
    warm = warm_mem = None
    if warm_dry:
        # every request file and image there (written as a run leaves them, without paying for 100,000
        # images: the offline provider's sidecars are as valid), then the same plan again
        write_made(root, env)
        warm, warm_mem = measure(snakemake_cmd(*cfg), root, env, f"dry-{dry_size}-warm")
        row(f"warm --dry-run, {dry_size:,} rows (nothing changed)", warm, floor_seconds, 1.2)
        row("  its peak memory", warm_mem, floor_mem, 1.5, unit="MB")
    print(f"  floor: dry-run {floor_seconds:.1f} s, {floor_mem:.0f} MB")
    # The workflow sets Python's garbage collector for its plan (image_batch.common.collector), which
    # also makes Snakemake's own DAG cheaper: the same floor given the same settings shows what the
    # workflow still adds to Snakemake (not a target)
    gc_seconds, gc_mem, _ = floor_dry(dry_size, variant="floor-gc")
    row(f"  (fresh --dry-run vs the floor with the same GC settings: {gc_seconds:.1f} s)", dry, gc_seconds)
    if warm is not None:
        row("  (warm --dry-run vs the same)", warm, gc_seconds)
    shutil.rmtree(root, ignore_errors=True)
    out = {
        "dry": dry,
        "dry_mem": mem,
        "warm_dry": warm,
        "warm_dry_mem": warm_mem,
        "floor_dry": floor_seconds,
        "floor_dry_mem": floor_mem,
        "floor_gc_dry": gc_seconds,
        "floor_gc_dry_mem": gc_mem,
        "per_image_ms": {},
    }
    for n in sizes:
        w = workflow(n, api, label=f"scale-{n}")
        per = 1000 * w["full"] / n
        out["per_image_ms"][n] = per
        print(f"  full run {n:>7,} rows: {w['full']:.1f} s = {per:.2f} ms per image, {w['mem']:.0f} MB")
        shutil.rmtree(w["root"], ignore_errors=True)
    return out


def target3(per_minute, n, latency):
    print(
        f"\nTarget 3: stand-in limited to {per_minute} images/minute (429 + retry-after beyond), "
        f"{n} rows, {latency * 1000:.0f} ms per answer"
    )
    with FakeOpenAI(api_key=KEY, rate_limit_per_minute=per_minute, latency=latency, render_size=RENDER) as api:
        root = workflow_project(f"ratelimit-{n}", n)
        env = {**scrubbed_environ(), "AI_API_KEY": KEY, "OPENAI_BASE_URL": api.base_url}
        seconds, _ = measure(snakemake_cmd("--cores", "8", "--config", "input_csv=input.csv"), root, env, "ratelimit")
        stats = api.stats()
        ok = [c["time"] for c in api.calls if c["status"] == 200]
        span = (max(ok) - min(ok)) or 1e-9
        throughput = (len(ok) - 1) / span * 60
        made = len(list((root / "results" / "images").rglob("*.png")))
        print(
            f"  {made}/{n} images in one run, {seconds:.1f} s; sustained {throughput:.1f}/min = "
            f"{100 * throughput / per_minute:.1f}% of the limit (target >= 95%); "
            f"429 answers: {stats['status_429']} (target < {n})"
        )
        return {
            "seconds": seconds,
            "throughput_per_min": throughput,
            "share": throughput / per_minute,
            "status_429": stats["status_429"],
            "made": made,
        }


def awscli():
    venv = RUNS / "awscli-venv"
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return aws


def target4(api):
    print("\nTarget 4: first sync and no-op resync of the 1,632 parti prompts to moto_server, vs `aws s3 sync`")
    if not PARTI.exists():
        print(f"  skipped: {PARTI} not found")
        return None
    aws = awscli()
    s3 = MotoS3().start()
    try:
        root = workflow_project("sync-parti", sheet=PARTI)
        env = {**scrubbed_environ(), "AI_API_KEY": KEY, "OPENAI_BASE_URL": api.base_url}
        measure(snakemake_cmd("--cores", "8", "--config", "input_csv=input.csv"), root, env, "sync-images")
        images = root / "results" / "images"
        count = sum(1 for _ in images.rglob("*.*"))
        s3env = {**env, **s3.env(), "S3_BUCKET_NAME": "ours"}
        s3.client().create_bucket(Bucket="ours")
        s3.client().create_bucket(Bucket="theirs")
        ours, _ = measure(snakemake_cmd("--cores", "8", "--config", "input_csv=input.csv"), root, s3env, "sync-ours")
        log = (root / "results/logs/sync.log").read_text().splitlines()
        job = _log_span(log)
        theirs, _ = measure(
            [str(aws), "s3", "sync", "--only-show-errors", str(images), "s3://theirs/"],
            root,
            {**env, **s3.env()},
            "sync-aws",
        )
        (root / "results" / "_SUCCESS.json").unlink()
        noop, _ = measure(snakemake_cmd("--cores", "8", "--config", "input_csv=input.csv"), root, s3env, "sync-noop")
        noop_log = (root / "results/logs/sync.log").read_text().splitlines()
        their_noop, _ = measure(
            [str(aws), "s3", "sync", "--only-show-errors", str(images), "s3://theirs/"],
            root,
            {**env, **s3.env()},
            "sync-aws-noop",
        )
        print(f"  {count} files. aws s3 sync: {theirs:.1f} s (no-op {their_noop:.1f} s)")
        print(
            f"  workflow, sync job alone: {job:.1f} s = {job / theirs:.2f}x aws s3 sync (target <= 1.05x); "
            f"whole `snakemake` invocation incl. start-up: {ours:.1f} s = {ours / theirs:.2f}x"
        )
        print(
            f"  no-op resync (marker removed, sync rerun): {noop:.1f} s; "
            + "; ".join(
                line.split(" ", 1)[1] for line in noop_log if line.split(" ", 1)[-1].startswith(("done", "destination"))
            )
        )
        return {
            "files": count,
            "aws": theirs,
            "aws_noop": their_noop,
            "ours_job": job,
            "ours_total": ours,
            "noop": noop,
        }
    finally:
        s3.stop()


def _log_span(lines):
    from datetime import datetime

    stamps = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines if line[:4].isdigit()]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1,2,3,4")
    parser.add_argument("--sizes", default="10000", help="target 1 size")
    parser.add_argument("--scale-sizes", default="10000,30000,100000", help='target 2 per-image sizes ("": none)')
    parser.add_argument("--dry-size", type=int, default=100000)
    parser.add_argument("--rate", type=int, default=600, help="target 3 limit, images per minute")
    parser.add_argument("--rate-rows", type=int, default=800)
    args = parser.parse_args(argv)
    targets = set(args.targets.split(","))
    RUNS.mkdir(exist_ok=True)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    results = {}
    with FakeOpenAI(api_key=KEY, render_size=RENDER) as api:
        if "1" in targets:
            for n in (int(s) for s in args.sizes.split(",")):
                results[f"target1-{n}"] = target1(api, n)
        if "2" in targets:
            results["target2"] = target2(api, [int(s) for s in args.scale_sizes.split(",") if s], args.dry_size)
        if "4" in targets:
            results["target4"] = target4(api)
    if "3" in targets:
        results["target3"] = target3(args.rate, args.rate_rows, 0.05)
    saved = RUNS / "results.json"
    merged = json.loads(saved.read_text()) if saved.exists() else {}
    merged.update(results)
    saved.write_text(json.dumps(merged, indent=2, default=str))
    print(f"\nfigures saved to {RUNS / 'results.json'}")


if __name__ == "__main__":
    main()
