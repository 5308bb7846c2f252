#!/usr/bin/env python3
"""Descriptions stage on its own: validate a sheet and write results/manifest.csv and the per-image
request files under results/specs (the same step the workflow runs while it is parsed).

    python scripts/generate_descriptions.py input.csv [--config config/config.yaml]
"""

import argparse
import sys

import _bootstrap

from image_batch.common.errors import UserError
from image_batch.descriptions.specs import write_manifest
from image_batch.plan import make_plan


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_csv")
    _bootstrap.add_config_argument(parser)
    args = parser.parse_args(argv)
    try:
        plan = make_plan(_bootstrap.load_config(args.config, input_csv=args.input_csv))
        write_manifest(plan.specs)
    except UserError as error:
        return _bootstrap.fail(error)
    print(f"{len(plan.images)} images; {plan.rewritten} request file(s) new or changed; see results/manifest.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
