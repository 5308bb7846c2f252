# Image.Batch: a sheet of image descriptions -> one PNG per row, a folder per context -> S3.
# The rules live in workflow/rules; the logic in workflow/image_batch (importable, unit-tested).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/sync.smk"
include: "workflow/rules/report.smk"


if STORAGE:

    include: "workflow/rules/storage.smk"


rule all:
    default_target: True
    input:
        "results/_SUCCESS.json",
        CONTACT_SHEETS,


onstart:
    # the executor is known only now, before any job is submitted
    check_job_environment()


onerror:
    print(PLAN.failure_summary(), file=sys.stderr)
