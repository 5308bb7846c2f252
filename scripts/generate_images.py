#!/usr/bin/env python3
"""Images stage for one image, outside Snakemake: make the PNG and sidecar from a request file.

    python scripts/generate_images.py results/specs/nature/fox-01.json \
        results/images/nature/fox-01.png results/images/nature/fox-01.json [--log FILE]
"""

import argparse
import sys

import _bootstrap  # noqa: F401
import yaml

from image_batch.errors import UserError
from image_batch.generate import make_image
from image_batch.settings import load_dotenv_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("png")
    parser.add_argument("sidecar")
    parser.add_argument("--log", default=None)
    parser.add_argument("--config", default=str(_bootstrap.REPO / "config" / "config.yaml"))
    args = parser.parse_args(argv)
    load_dotenv_file(".env")
    config = yaml.safe_load(open(args.config, encoding="utf-8"))
    try:
        sidecar = make_image(args.spec, args.png, args.sidecar, args.log, config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.png}: {sidecar['bytes']} bytes, sha256 {sidecar['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
