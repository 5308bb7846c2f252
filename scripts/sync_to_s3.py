#!/usr/bin/env python3
"""Sync stage on its own: upload results/images (PNGs and sidecars) to s3://$S3_BUCKET_NAME/<prefix>,
or to the local destination folder when no bucket is set, then write the markers.

    python scripts/sync_to_s3.py [--images results/images] [--prefix P] [--marker results/_SUCCESS.json]
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import _bootstrap

from image_batch.common.errors import UserError
from image_batch.common.settings import destination
from image_batch.sync.upload import sync


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="results/images")
    parser.add_argument("--prefix", default=None, help="overrides sync.prefix from the config")
    parser.add_argument("--marker", default="results/_SUCCESS.json")
    _bootstrap.add_config_argument(parser)
    args = parser.parse_args(argv)
    try:
        settings = _bootstrap.load_config(args.config)
        if args.prefix is not None:
            settings = dataclasses.replace(settings, sync=dataclasses.replace(settings.sync, prefix=args.prefix))
        where = destination(settings)
    except UserError as error:
        return _bootstrap.fail(error)
    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix in (".png", ".json") and p.is_file())
    # the configured sheet owns what this sync puts there (see image_batch.sync.upload.sheet_ledger)
    sheet = os.path.realpath(settings.input_csv)
    marker = sync(files, where, args.marker, images_root=args.images, settings=settings.sync, sheet=sheet)
    print(f"{where.describe()}: {marker['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
