#!/usr/bin/env python3
"""Images stage for one image, outside Snakemake: make the PNG and sidecar from a request file.

    python scripts/generate_images.py results/specs/nature/fox-01.json \
        results/images/nature/fox-01.png results/images/nature/fox-01.json [--log FILE]
"""

import argparse
import sys

import _bootstrap

from image_batch.common.errors import UserError
from image_batch.images.generate import make_image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("png")
    parser.add_argument("sidecar")
    parser.add_argument("--log", default=None)
    _bootstrap.add_config_argument(parser)
    args = parser.parse_args(argv)
    try:
        settings = _bootstrap.load_config(args.config)
        sidecar = make_image(args.spec, args.png, args.sidecar, args.log, settings)
    except UserError as error:
        return _bootstrap.fail(error)
    print(f"{args.png}: {sidecar['bytes']} bytes, sha256 {sidecar['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
