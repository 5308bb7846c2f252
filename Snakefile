# Image.Batch: a sheet of image descriptions -> one PNG per row, a folder per context -> S3.
# The rules live in workflow/rules; the logic in workflow/image_batch (importable, unit-tested).
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Run from another folder (snakemake -s path/to/Snakefile): Snakemake's own error named the path it
# checked, not the fix.
if not (workflow.overwrite_configfiles or os.path.exists("config/config.yaml")):
    print(
        f"Image.Batch: no config/config.yaml in {os.getcwd()} (paths are read from the folder snakemake runs in): "
        f"run from the project's folder (cd {workflow.basedir}), or add --directory {workflow.basedir}, "
        "or give your settings with --configfile FILE",
        file=sys.stderr,
    )
    sys.exit(2)


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/sync.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/_SUCCESS.json",
        # synced to where this run syncs: another destination (or one synced before) is synced too
        str(PLAN.synced_record),
        # images deleted behind an up-to-date sync (see image_batch.sync.chunks.missing_behind)
        PLAN.missing,
        # one contact sheet per context (page of 100 images): the gallery at a glance
        CONTACT_SHEETS,
        # the plan files a real run writes (new or changed requests, member lists): the jobs that
        # read them run after them (named by content, they are missing, never newer)
        [] if REPORTING else PLAN.due + SHEET_MEMBERS.files.due,


# The Snakefile is read: the plan is never walked by the garbage collector again (collector.settle)
collector.settle()


onstart:
    # a real run has started (never a dry run, --touch, --lint, --report ...): lock, batches, ...
    start_run()


onsuccess:
    actions.finish(PLAN, ok=True)


onerror:
    actions.finish(PLAN, ok=False)
