#!/usr/bin/env python3
"""Contact sheets: what the thumbnail cache saves.  Prints a table of figures.

    python benchmarks/contact_sheets.py                  # 1,000 images of 1024 px in one context
    python benchmarks/contact_sheets.py --images 300     # a quick look
    python benchmarks/contact_sheets.py --workflow       # also: the whole workflow with and without sheets
    python benchmarks/contact_sheets.py --images 0 --dag-rows 10000   # only: what the sheet jobs add to
                                                         # dry runs and no-op reruns of 10,000 rows

The images are photograph-like (smooth colour fields with grain, ~2 MB as PNG, so decoding costs
what a real 1024 px picture costs), each file distinct (its own text chunk), built page by page
exactly as the contact_sheet rule's jobs build them (one after another here; Snakemake runs them
in parallel).  Scenarios:
  cold          every page, empty cache: every PNG decoded
  no change     every page again (as if every member file had changed): no PNG read
  one changed   one image made again: only its page is due, one PNG decoded
  one inserted  a new image at the top of the context: every page is due (membership shifted),
                one PNG decoded, the rest found by content hash
  one touched   same bytes, new mtime: hashed, not decoded
  no cache      the changed page rebuilt with an empty cache: what a rerun would cost without it
With --workflow: `snakemake` on a sheet of that many rows (offline generator, placeholder images)
to results/_SUCCESS.json only and with the contact sheets, from scratch; then the rerun after one
image changed.  With --dag-rows: dry runs and no-op reruns with and without the sheet jobs.
CPU seconds count every process a run waited for; on a busy machine they are steadier than wall
seconds.
"""

import argparse
import csv
import io
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO))

from PIL import Image, ImageChops  # noqa: E402

from image_batch.common.pages import paginate  # noqa: E402
from image_batch.report import contact_sheet as cs  # noqa: E402

FOLDER = "bench"


def photo_like(seed, size=1024):
    """A deterministic picture with a photograph's statistics: smooth fields plus fine grain."""
    random.seed(seed)
    bands = [
        Image.effect_noise((random.randint(6, 24),) * 2, 90).resize((size, size), Image.Resampling.BICUBIC)
        for _ in range(3)
    ]
    grain = Image.effect_noise((size, size), 10).convert("RGB")
    return ImageChops.add(Image.merge("RGB", bands), grain, scale=1.0, offset=-128)


def with_text_chunk(png, text):
    """``png`` with a tEXt chunk after IHDR: other bytes (another content hash), same pixels."""
    body = b"Comment\x00" + text.encode("ascii")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def make_images(folder, count, bases=12):
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for seed in range(bases):
        out = io.BytesIO()
        photo_like(seed).save(out, format="PNG")
        sources.append(out.getvalue())
    paths = []
    for i in range(count):
        path = folder / f"img-{i:05d}.png"
        path.write_bytes(with_text_chunk(sources[i % bases], f"image {i}"))
        paths.append(path)
    return paths, sum(len(s) for s in sources) / len(sources)


def build_pages(ids, root, pages=None):
    """Build the sheets of context ``ids`` as the rule's jobs would (``pages``: only those).
    Returns (wall seconds, CPU seconds, decoded, hashed, reused, sheets built)."""
    sheets = paginate([(FOLDER, image_id) for image_id in ids])
    totals = [0, 0, 0, 0]
    start, cpu = time.perf_counter(), time.process_time()
    for name, page in sheets.items():
        if pages is not None and name not in pages:
            continue
        info = cs.members(page, "Benchmark")
        pngs = [root / "images" / FOLDER / f"{image_id}.png" for image_id in page.image_ids]
        stats = cs.build(info, pngs, root / "sheets" / f"{name}.jpg", cache_root=root / "cache")
        totals[1] += stats.decoded
        totals[2] += stats.hashed
        totals[3] += stats.reused
        totals[0] += 1
    return (time.perf_counter() - start, time.process_time() - cpu, *totals[1:], totals[0])


def page_of(ids, image_id):
    return next(name for name, page in paginate([(FOLDER, i) for i in ids]).items() if image_id in page.image_ids)


def library_figures(count, root):
    paths, png_size = make_images(root / "images" / FOLDER, count)
    ids = [p.stem for p in paths]
    rows = []

    def scenario(label, pages=None, ids_=None):
        wall, cpu, decoded, hashed, reused, built = build_pages(ids_ or ids, root, pages)
        rows.append((label, built, decoded, hashed, reused, wall, cpu))

    scenario("cold (empty cache)")
    scenario("no change, every page")
    changed = ids[len(ids) // 2]
    (root / "images" / FOLDER / f"{changed}.png").write_bytes(
        with_text_chunk((root / "images" / FOLDER / f"{ids[0]}.png").read_bytes(), "changed")
    )
    scenario("one changed, its page", pages={page_of(ids, changed)})
    touched = ids[-1]
    os.utime(root / "images" / FOLDER / f"{touched}.png")
    scenario("one touched, its page", pages={page_of(ids, touched)})
    new = "img-new"
    (root / "images" / FOLDER / f"{new}.png").write_bytes(
        with_text_chunk((root / "images" / FOLDER / f"{ids[1]}.png").read_bytes(), "new")
    )
    scenario("one inserted first, all pages", ids_=[new, *ids])
    shutil.rmtree(root / "cache")
    scenario("no cache, one page", pages={page_of(ids, changed)})
    sheet = root / "sheets" / f"{FOLDER}.jpg"
    with Image.open(sheet) as image:
        sheet_size = image.size
    return rows, png_size, sheet.stat().st_size, sheet_size


def run_timed(command, cwd, env):
    """Run ``command``; (wall seconds, CPU seconds of it and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return time.perf_counter() - start, cpu


def workflow_figures(count, root):
    from tests.conftest import copy_workflow
    from tests.support.moto_s3 import scrubbed_environ

    env = scrubbed_environ()
    sheet_rows = [["image_id", "context", "description"]] + [
        [f"img-{i:05d}", "Benchmark", f"A photograph, number {i}"] for i in range(count)
    ]
    figures = []
    for label, targets in (("without sheets", ["results/_SUCCESS.json"]), ("with sheets", [])):
        project = copy_workflow(root / label.replace(" ", "-"))
        with open(project / "bench.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(sheet_rows)
        command = [sys.executable, "-m", "snakemake", "--cores", str(os.cpu_count() or 1), *targets]
        command += ["--config", "input_csv=bench.csv"]  # last: --config takes every word after it
        figures.append((f"first run {label}", *run_timed(command, project, env)))
    png = project / "results" / "images" / "benchmark" / f"img-{count // 2:05d}.png"
    with Image.open(png) as image:
        image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(png)
    started = time.time()
    figures.append(("rerun after one image changed", *run_timed(command, project, env)))
    logs = sorted((project / "results" / "logs" / "contact-sheets").glob("*/*.log"))
    rebuilt = [log.read_text().strip().split(": ", 1)[1] for log in logs if log.stat().st_mtime >= started]
    return figures, rebuilt


def dag_figures(rows, root, repeats=2):
    """What the sheet jobs add to Snakemake's own work on ``rows`` rows in 12 contexts: dry runs,
    then (after a full run) no-op reruns, each with the default target (images, sync and contact
    sheets) and with results/_SUCCESS.json alone (no sheets), alternating."""
    from tests.conftest import copy_workflow
    from tests.support.moto_s3 import scrubbed_environ

    env = scrubbed_environ()
    project = copy_workflow(root / "dag")
    contexts = ["Animals", "Food & Beverage", "Vehicles", "World Knowledge", "Abstract", "Artifacts"]
    contexts += ["Illustrations", "Indoor Scenes", "Outdoor Scenes", "People", "Produce & Plants", "Arts"]
    with open(project / "bench.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "context", "description"])
        writer.writerows(
            [f"img-{i:06d}", contexts[i % len(contexts)], f"A photograph, number {i}"] for i in range(rows)
        )
    base = [sys.executable, "-m", "snakemake", "--cores", str(os.cpu_count() or 1)]
    config = ["--config", "input_csv=bench.csv"]
    variants = (("with sheets", []), ("without sheets", ["results/_SUCCESS.json"]))
    subprocess.run([*base, "-n", *config], cwd=project, env=env, check=True, capture_output=True)  # specs
    figures = {}
    for phase in ("dry run", "no-op rerun"):
        if phase == "no-op rerun":
            subprocess.run([*base, *config], cwd=project, env=env, check=True, capture_output=True)
        for _ in range(repeats):
            for label, targets in variants:
                flags = ["-n"] if phase == "dry run" else []
                figures.setdefault(f"{phase} {label}", []).append(
                    run_timed([*base, *flags, *targets, *config], project, env)
                )
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the one context (default 1,000)")
    parser.add_argument("--workflow", action="store_true", help="also time whole workflow runs")
    parser.add_argument("--dag-rows", type=int, help="also time dry runs and no-op reruns of this many rows")
    args = parser.parse_args(argv)
    print(
        f"Contact sheets, {args.images:,} images in one context; Python {sys.version.split()[0]}, "
        f"Pillow {Image.__version__}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="contact-sheets-") as tmp:
        if args.images:
            rows, png_size, sheet_bytes, sheet_size = library_figures(args.images, Path(tmp))
            print(
                f"PNGs of 1024x1024, ~{png_size / 1e6:.1f} MB each; a full sheet: {sheet_size[0]}x{sheet_size[1]}, "
                f"{sheet_bytes / 1e6:.2f} MB JPEG"
            )
            print(
                f"{'scenario':34} {'sheets':>6} {'decoded':>8} {'hashed':>7} {'unchanged':>9} "
                f"{'wall s':>7} {'CPU s':>7}"
            )
            for label, built, decoded, hashed, reused, wall, cpu in rows:
                print(f"{label:34} {built:>6} {decoded:>8} {hashed:>7} {reused:>9} {wall:>7.2f} {cpu:>7.2f}")
        if args.workflow:
            figures, rebuilt = workflow_figures(args.images, Path(tmp))
            print(f"workflow ({args.images:,} rows, offline placeholders) {'wall s':>14} {'CPU s':>8}")
            for label, wall, cpu in figures:
                print(f"{label:50} {wall:>8.1f} {cpu:>8.1f}")
            print(f"sheets the rerun rebuilt: {rebuilt}")
        if args.dag_rows:
            print(f"Snakemake's own work, {args.dag_rows:,} rows in 12 contexts {'wall s':>10} {'CPU s':>14}")
            for label, runs in dag_figures(args.dag_rows, Path(tmp)).items():
                walls = " / ".join(f"{wall:.1f}" for wall, _ in runs)
                cpus = " / ".join(f"{cpu:.1f}" for _, cpu in runs)
                print(f"{label:40} {walls:>14} {cpus:>14}")


if __name__ == "__main__":
    main()
