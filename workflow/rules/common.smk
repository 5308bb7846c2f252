import atexit
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from image_batch.common import collector

collector.loosen()  # planning and the DAG: fewer garbage collections (image_batch.common.collector)

from image_batch import plan as planning
from image_batch.common import addressed, held_signals, snakemake_args
from image_batch.common.input_functions import input_function
from image_batch.common.errors import UserError, os_problem
from image_batch.descriptions import prompts, references, specs
from image_batch.common.settings import (
    config_file_name,
    load_settings,
    passed_variables,
    secrets_in_commands,
)
from image_batch.images import store, worker
from image_batch.report import contact_sheet, gallery
from image_batch.report.last_run import is_report_run, makes_report, report_sheet
from image_batch.run import actions, interrupt, quiet
from image_batch.sync import chunks, upload


def fail(error):
    """A user's problem (bad sheet, bad setting): its message as written, no traceback, exit 2."""
    print(f"Image.Batch: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


if workflow.is_main_process:
    quiet.install()
    # Ctrl-C / SIGTERM: one line, no traceback; once jobs may pay, the calls in flight are kept
    interrupt.install_early()
else:
    held_signals.release()  # a job process takes them, whatever mask it inherited (main.py holds them)

# With a default storage provider (--default-storage-provider s3 ...) every input and output lives
# in storage, the plan files too (written by local rules of the real run: write_request,
# write_plan_file, record_destination). Jobs that share no filesystem share no local
# response store either: paid answers then go to one in S3 (store.shared_store).
STORAGE = bool(workflow.storage_settings.default_storage_provider)
# `snakemake --report` shows what the last run made: its sheet (unless --config input_csv=...
# names one), and only the images that exist; it writes nothing. (Snakemake does not tell the
# Snakefile it is parsed for a report: its own argument parser reads the command line, and the
# answer only chooses what to show.)
REPORTING = workflow.is_main_process and is_report_run(sys.argv)
try:
    REPORT_SHEET = report_sheet(config, workflow.config_settings.config, sys.argv)
    config.update(REPORT_SHEET.settings)
    if REPORT_SHEET.note and workflow.is_main_process:
        print(f"Image.Batch: {REPORT_SHEET.note}", file=sys.stderr)
    # config/config.yaml, checked against workflow/schemas/config.schema.yaml (which holds every
    # default), read once into typed settings
    # (messages name where a bad setting came from: --config, or the config file)
    SETTINGS = load_settings(
        config, workflow.config_settings.config, config_file_name(workflow.config_settings.configfiles)
    )
    if STORAGE and not workflow.storage_settings.shared_fs_usage:
        root, note = store.shared_store(SETTINGS, workflow.storage_settings.default_storage_prefix)
        SETTINGS = dataclasses.replace(SETTINGS, response_store=root)
        if note and workflow.is_main_process:
            print(note, file=sys.stderr)
    # Planning only computes, and writes nothing: the plan files are named by their content and
    # written by the rules of a real run (write_request, write_plan_file); acting is for onstart.
    # a real run's planning fetches the reference pictures named by an address (kept at its start)
    # (Snakemake does not tell a Snakefile being parsed whether jobs will run: its command line does)
    references.allow_fetching(workflow.is_main_process and not REPORTING and references.runs_jobs(sys.argv))
    PLAN = planning.make_plan(
        SETTINGS,
        local_images=not STORAGE,
        announce=workflow.is_main_process and not REPORTING,
        only_made=REPORTING and not STORAGE,
        guard_paid=workflow.is_main_process and not REPORTING,
    )
    if workflow.is_main_process:  # an image target no row asks for (snakemake results/images/...)
        PLAN.check_targets(getattr(snakemake_args.parsed(sys.argv), "targets", None) or (), sidecars_declared=STORAGE)
    if REPORTING and PLAN.made_only is not None and not PLAN.made_only:
        raise UserError(
            f"nothing has been made here yet for {PLAN.sheet}: run `snakemake --cores 8` (or "
            f"`python main.py {PLAN.sheet}`) first, then ask for the report"
        )
except UserError as error:
    fail(error)
except OSError as error:  # a file or folder of the project that cannot be read or written
    fail(os_problem(error))

gallery.use_plan(PLAN.spec_of)  # the report's labels of images without an input

if workflow.is_main_process:
    atexit.register(actions.at_exit, workflow, PLAN)

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
    chunk="[a-z0-9]+(-[a-z0-9]+)*(_page[0-9]+)?",  # a page of the sheet (image_batch.common.pages)
    prompt_chunk="[0-9]+",
    # a plan file's name ends in the first 16 hex digits of its content's SHA-256 (exactly 16, so
    # an image id with dots, "fox.v2", parses one way only)
    digest="[0-9a-f]{16}",


def start_run():
    """onstart: refuse an executor that would write secrets into job commands, then everything a
    real run does before its first job (the lock, batches, ...: image_batch.run.actions)."""
    collector.restore()  # the DAG is built: the jobs' garbage is collected as Python always does
    try:
        problem = None
        if not workflow.storage_settings.shared_fs_usage:
            plugin = workflow.executor_plugin
            problem = secrets_in_commands(
                workflow.envvars,
                plugin.common_settings if plugin else None,
                plugin.name if plugin else "local",
                SETTINGS.secrets_in_job_commands,
            )
        if problem:
            raise UserError(problem)
        actions.start(workflow, PLAN)
    except UserError as error:
        fail(error)
    except OSError as error:  # e.g. a full disk when the response store's STORE.json is written
        fail(os_problem(error))


def make_image(wildcards, input, output, log):
    """The generate_image job: its request file (its input, or written now for an image not made
    yet: PLAN.job_request); describe: on, a row whose prompt was written in this run builds its
    request file first (image_batch.descriptions.prompts.image_request)."""
    sidecar = output.sidecar if STORAGE else str(specs.image_files(wildcards.folder, wildcards.image_id)[1])
    specs.drop_sidecar(sidecar)
    worker.make_image(
        prompts.image_request(PLAN, wildcards, PLAN.job_request(wildcards, input), SETTINGS),
        output.png,
        sidecar,
        log,
        SETTINGS,
        in_worker=worker.wanted(workflow),
    )


def make_contact_sheet(wildcards, input, output, log):
    """The contact_sheet job (workflow/rules/report.smk): the sheet of its page's PNGs (with a
    storage provider, or for a report, its inputs), titled from the page's member file (the page's
    digest, its input, took or wrote it)."""
    worker.contact_sheet(
        getattr(input, "members", None) or SHEET_MEMBERS.paths[wildcards.sheet],
        getattr(input, "images", None) or contact_sheet.sheet_pngs(SHEETS, wildcards.sheet),
        output,
        log,
        in_worker=worker.wanted(workflow),
        use_worker=SETTINGS.image_worker,
    )


def chunk_names(chunk):
    """The PNGs and sidecars of one sync chunk, relative to results/images."""
    return [f"{folder}/{image_id}.{kind}" for folder, image_id in PLAN.chunks[chunk] for kind in ("png", "json")]


def digest_inputs(chunk):
    """The inputs of one sync chunk's digest (unpack-ed: names it has only): its page's member file
    when it changed (image_batch.common.addressed), and its PNGs (an image job writes its sidecar
    right after its PNG, the only writer of either: a newer sidecar comes with a newer PNG, and a
    lost one makes its image job due: PLAN.remake_of). With a storage provider, the sidecars too
    (declared outputs there): the job reads the copies Snakemake fetches."""
    if STORAGE:
        inputs = {"images": [f"results/images/{name}" for name in chunk_names(chunk)]}
    else:
        inputs = {"images": [f"results/images/{folder}/{image_id}.png" for folder, image_id in PLAN.chunks[chunk]]}
        # a member's lost sidecar: its marker, so that a digest due (even for a run asked for the sync
        # alone) makes that image again before it (the marker makes the image job due)
        remake = [PLAN.remake_of(*member) for member in PLAN.chunks[chunk] if member in PLAN.requests.remake]
        if remake:
            inputs["remake"] = remake
    members = SHEET_MEMBERS.files.input(SHEET_MEMBERS.paths[chunk])
    if members:
        inputs["members"] = members
    return inputs


def sheet_inputs(sheet):
    """The inputs of one contact sheet (workflow/rules/report.smk; unpack-ed): its page's digest,
    newer than the sheet when one of its PNGs changed (the digest is the one job that takes them:
    image_batch.common.pages). With a storage provider, the PNGs too (the job reads the copies
    Snakemake fetches), and the member file (local files are written, not fetched). For a report,
    the PNGs that exist (it shows the sheets the last run made, of what it made)."""
    if PLAN.made_only is not None:
        pngs = [png for png in contact_sheet.sheet_pngs(SHEETS, sheet) if Path(png).exists()]
        return {"images": pngs}
    inputs = {"digest": PLAN.digest_of(sheet)}
    if STORAGE:
        inputs["images"] = contact_sheet.sheet_pngs(SHEETS, sheet)
        inputs["members"] = SHEET_MEMBERS.paths[sheet]
    return inputs


def digest_chunk(chunk, input, output):
    """The digest_chunk job (workflow/rules/sync.smk): its page's member file (written here for a
    page not digested yet), then the digest of each PNG and sidecar, by name under results/images
    (with a storage provider, the copies Snakemake fetched: its inputs, in chunk_names' order). A
    PNG of the same size and time as at the last sync is not read again (chunks.known_digests)."""
    SHEET_MEMBERS.files.ensure(SHEET_MEMBERS.paths[chunk])
    known = None if STORAGE else chunks.known_digests(chunks.known_path(PLAN.source))
    upload.write_chunk_digest(input.images if STORAGE else None, output, names=chunk_names(chunk), known=known)


def sync_job(input, output, log, before):
    """The sync job (workflow/rules/sync.smk): the list of pages (written here for a sheet not
    synced yet: SYNC_PAGES), then the sync (image_batch.sync.upload.sync_job)."""
    SHEET_MEMBERS.files.ensure(SYNC_PAGES)
    upload.sync_job(
        input,
        output.marker,
        log,
        SETTINGS,
        STORAGE and all_image_names(),
        output.synced,
        output.sheet,
        before,
        known=None if STORAGE else chunks.known_path(PLAN.source),
    )


def all_image_names():
    """Every PNG and sidecar, chunk by chunk, relative to results/images."""
    return [name for chunk in PLAN.chunks for name in chunk_names(chunk)]
