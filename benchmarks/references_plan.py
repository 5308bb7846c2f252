"""What reference pictures add to planning (build_specs): prints its figures.

    python benchmarks/references_plan.py [--rows 100000] [--distinct 10] [--kb 200]

Rows each name one of --distinct pictures (random bytes in a PNG of about --kb KB, so hashing and
Pillow's check do real work). Timed, each in a fresh state: the rows without pictures; with
pictures, nothing known (a first dry run: each distinct picture read once); with what a real run
kept (results/references/pictures.json: no picture read).
"""

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from image_batch.descriptions import references  # noqa: E402
from image_batch.descriptions.sheet import Row  # noqa: E402
from image_batch.descriptions.specs import build_specs  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=10)
    parser.add_argument("--kb", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("IMAGE_BATCH_TODAY", "2026-11-27")
    from tests.conftest import settings_for

    settings = settings_for(openai={"model": "gpt-image-2.5-sunburst"})
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        Path("sheets").mkdir()
        side = int((args.kb * 1024 / 3) ** 0.5)
        for i in range(args.distinct):
            out = io.BytesIO()
            Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="PNG")
            Path(f"sheets/p{i}.png").write_bytes(out.getvalue())
        plain = [Row(i + 2, f"r{i}", "Shop", "shop", f"a mug {i}") for i in range(args.rows)]
        rows = [
            Row(i + 2, f"r{i}", "Shop", "shop", f"a mug {i}", reference=f"p{i % args.distinct}.png")
            for i in range(args.rows)
        ]

        def timed(what, rows):
            references._cache.clear()
            references._disk["loaded"] = None
            began = time.perf_counter()
            build_specs(rows, settings, "openai", "sheets/input.csv", environ={})
            print(f"{what}: {time.perf_counter() - began:.2f} s")

        timed(f"{args.rows} rows, no pictures", plain)
        references._learnt.clear()
        timed(f"{args.rows} rows, {args.distinct} distinct pictures, nothing known", rows)
        references.save_cache()
        timed(f"{args.rows} rows, {args.distinct} distinct pictures, known from a real run", rows)


if __name__ == "__main__":
    main()
