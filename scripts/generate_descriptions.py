#!/usr/bin/env python3
"""Descriptions stage on its own: validate a sheet and write results/manifest.csv and the per-image
request files under results/specs that are new or changed (what a real run of the workflow writes
with its write_request jobs; like a real run, it takes the run lock first).

    python scripts/generate_descriptions.py input.csv [--config config/config.yaml]
"""

import argparse
import sys

import _bootstrap

from image_batch.common.errors import UserError
from image_batch.descriptions.specs import write_manifest, write_request
from image_batch.plan import make_plan
from image_batch.run import lock


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_csv")
    _bootstrap.add_config_argument(parser)
    args = parser.parse_args(argv)
    try:
        plan = make_plan(_bootstrap.load_config(args.config, input_csv=args.input_csv))
        lock.acquire()  # never beside a real run: writing a request file replaces the image's others
        due = set(plan.requests.due)
        for image in plan.images:
            path = plan.requests.paths[image]
            if path in due:
                write_request(plan.spec_of(*image), path, plan.requests.superseded.get(image, ()))
        write_manifest(plan.specs)
    except UserError as error:
        return _bootstrap.fail(error)
    print(f"{len(plan.images)} images; {plan.rewritten} request file(s) new or changed; see results/manifest.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
