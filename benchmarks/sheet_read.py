"""How fast the input sheet is read and checked, in every format: prints its figures.

    python benchmarks/sheet_read.py [--rows 10000] [--repeat 5] [--source PATH]

Rows come from ../shared/data/parti-prompts.csv beside the repository when it is there (or from
--source), repeated with fresh ids up to --rows; otherwise they are generated. Each format is written
once to a temporary folder, then read_sheet() reads it --repeat times; the best and the median wall
time are printed, and the best CPU time (which other processes on a busy machine disturb less).
For text, the bare parse by Python's csv module and by pandas' C parser are timed too: the gap
between them and read_sheet() is the checks, which either parser would need. No .xls is written:
there is no maintained writer (tests/test_sheet_formats.py builds small ones).
"""

import argparse
import csv
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

import pandas as pd  # noqa: E402

from image_batch.descriptions.sheet import read_sheet  # noqa: E402

SHARED_SOURCE = REPO.parent / "shared" / "data" / "parti-prompts.csv"
WORDS = ["red", "fox", "owl", "cake", "kettle", "river", "mountain", "city", "night", "glass", "paper", "light"]


def source_rows(path):
    if path and Path(path).is_file():
        with open(path, encoding="utf-8-sig", newline="") as handle:
            records = list(csv.DictReader(handle))
        return [(r["context"], r["description"]) for r in records], str(path)
    rng = random.Random(7)
    contexts = ["Nature", "Food & Beverage", "Abstract", "People", "Vehicles", "Animals", "Café"]
    made = [(rng.choice(contexts), " ".join(rng.choices(WORDS, k=rng.randint(3, 40)))) for _ in range(1000)]
    return made, "generated"


def table(pairs, rows, multiline=False):
    out = [["image_id", "context", "description"]]
    for i in range(rows):
        context, description = pairs[i % len(pairs)]
        if multiline and i % 10 == 0:
            description = description + "\nsecond line"
        out.append([f"img{i:05d}", context, description])
    return out


def write_text(path, rows, delimiter, bom=False):
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))


def write_book(path, rows, engine):
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, index=False, engine=engine, sheet_name="Images")


def timed(action, repeat):
    """(result, best wall time, median wall time, best CPU time of this process)"""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = action()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return result, min(times), statistics.median(times), min(cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--source", default=str(SHARED_SOURCE))
    args = parser.parse_args(argv)
    pairs, origin = source_rows(args.source)
    rows = table(pairs, args.rows)
    numeric = [rows[0]] + [[i + 1, c, d] for i, (_, c, d) in enumerate(rows[1:])]
    print(f"rows: {args.rows} (descriptions from {origin}); best and median of {args.repeat} reads")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        files = {
            "comma.csv": lambda p: write_text(p, rows, ","),
            "semicolon-bom.csv": lambda p: write_text(p, rows, ";", bom=True),
            "tabs.tsv": lambda p: write_text(p, rows, "\t"),
            "multiline.csv": lambda p: write_text(p, table(pairs, args.rows, multiline=True), ","),
            "text.xlsx": lambda p: write_book(p, rows, "openpyxl"),
            "numeric-ids.xlsx": lambda p: write_book(p, numeric, "openpyxl"),
            "text.ods": lambda p: write_book(p, rows, "odf"),
            "numeric-ids.ods": lambda p: write_book(p, numeric, "odf"),
        }
        print(f"{'file':<20} {'size':>9} {'best s':>8} {'median s':>9} {'cpu s':>7} {'rows/s':>9}")
        for name, write in files.items():
            path = folder / name
            write(path)
            read, best, median, cpu = timed(lambda p=path: read_sheet(p), args.repeat)
            assert len(read) == args.rows, (name, len(read))
            size = f"{path.stat().st_size / 1e6:.1f} MB"
            print(f"{name:<20} {size:>9} {best:>8.3f} {median:>9.3f} {cpu:>7.3f} {args.rows / best:>9.0f}")
        path = folder / "comma.csv"
        text = path.read_text(encoding="utf-8")
        _, best_csv, _, _ = timed(lambda: list(csv.reader(io.StringIO(text, newline=""), strict=True)), args.repeat)
        _, best_pd, _, _ = timed(lambda: pd.read_csv(path, dtype=str, keep_default_na=False), args.repeat)
        print(f"parse only, comma.csv: csv module {best_csv:.3f} s, pandas C parser {best_pd:.3f} s (best)")


if __name__ == "__main__":
    main()
