import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from image_batch.errors import UserError
from image_batch import chunks, gallery, plan, runlock, sync, worker

validate(config, schema="../schemas/config.schema.yaml")

try:
    # Job processes (cluster executors) re-read the Snakefile: only the main process writes the
    # plan files and talks to the user; jobs take their inputs from it.
    PLAN = plan.prepare(
        config,
        announce=workflow.is_main_process,
        write=workflow.is_main_process,
        lock=workflow.is_main_process,
        dry_run=runlock.looks_like_dry_run(sys.argv),
    )
except UserError as error:
    raise WorkflowError(str(error))


wildcard_constraints:
    folder="[a-z0-9]+(-[a-z0-9]+)*",
    image_id="[A-Za-z0-9_-][A-Za-z0-9._-]*",
    chunk="all|[0-9a-f]+",


def chunk_images(wildcards):
    """The PNGs and sidecars of one sync chunk."""
    return [
        f"results/images/{folder}/{image_id}.{kind}"
        for folder, image_id in PLAN.chunks[wildcards.chunk]
        for kind in ("png", "json")
    ]
