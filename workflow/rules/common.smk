import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from image_batch.common.errors import UserError
from image_batch.sync import chunks
from image_batch.report import gallery
from image_batch.report.last_run import report_sheet
from image_batch import plan
from image_batch.run import lock as runlock
from image_batch.images import store
from image_batch.sync import upload as sync
from image_batch.images import worker
from image_batch.common.settings import passed_variables, secrets_in_commands

validate(config, schema="../schemas/config.schema.yaml")

# With a default storage provider (--default-storage-provider s3 ...) every input and output lives
# in storage, but the plan files are written here, locally, while the Snakefile is parsed: the
# rule in storage.smk puts them into storage. Jobs that share no filesystem share no local
# response store either: paid answers then go to one in S3 (store.storage_root).
STORAGE = bool(workflow.storage_settings.default_storage_provider)
if STORAGE and not workflow.storage_settings.shared_fs_usage:
    config["response_store"], STORE_NOTE = store.shared_store(config, workflow.storage_settings.default_storage_prefix)
    if STORE_NOTE and workflow.is_main_process:
        print(STORE_NOTE, file=sys.stderr)

try:
    # `snakemake --report` shows the last run's sheet, unless --config input_csv=... names one.
    REPORT_SHEET = report_sheet(config, workflow.config_settings.config, sys.argv)
    config.update(REPORT_SHEET.settings)
    if REPORT_SHEET.note and workflow.is_main_process:
        print(f"Image.Batch: {REPORT_SHEET.note}", file=sys.stderr)
    # Job processes (cluster executors) re-read the Snakefile: only the main process writes the
    # plan files and talks to the user; jobs take their inputs from it.
    PLAN = plan.prepare(
        config,
        announce=workflow.is_main_process,
        write=workflow.is_main_process,
        lock=workflow.is_main_process,
        dry_run=runlock.looks_like_dry_run(sys.argv),
        local_images=not STORAGE,
    )
except UserError as error:
    raise WorkflowError(str(error))

# Without a shared filesystem (--shared-fs-usage none; implied by Kubernetes and cloud executors)
# jobs run where this environment is not: declare the secrets and settings that are set, so the
# executor passes them (a Kubernetes secret, the batch job's environment). With a shared
# filesystem jobs inherit the environment, and declaring them would put them in job scripts.
if not workflow.storage_settings.shared_fs_usage:

    envvars:
        *passed_variables(),


wildcard_constraints:
    folder="[a-z0-9]+(-[a-z0-9]+)*",
    image_id="[A-Za-z0-9_-][A-Za-z0-9._-]*",
    chunk="all|[0-9a-f]+",


def check_job_environment():
    """Refuse (before any job) to let an executor write secrets into job commands."""
    if workflow.storage_settings.shared_fs_usage:
        return
    plugin = workflow.executor_plugin
    problem = secrets_in_commands(
        workflow.envvars,
        plugin.common_settings if plugin else None,
        plugin.name if plugin else "local",
        config.get("secrets_in_job_commands", False),
    )
    if problem:
        raise WorkflowError(f"Image.Batch: {problem}")


def chunk_names(chunk):
    """The PNGs and sidecars of one sync chunk, relative to results/images."""
    return [f"{folder}/{image_id}.{kind}" for folder, image_id in PLAN.chunks[chunk] for kind in ("png", "json")]


def chunk_images(wildcards):
    """The PNGs and sidecars of one sync chunk."""
    return [f"results/images/{name}" for name in chunk_names(wildcards.chunk)]


def all_image_names():
    """Every PNG and sidecar, chunk by chunk, relative to results/images."""
    return [name for chunk in sorted(PLAN.chunks) for name in chunk_names(chunk)]
