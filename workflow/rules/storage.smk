# Only with a default storage provider (--default-storage-provider s3 ...; see the Snakefile).
#
# The plan files (specs, chunk members, destination record) are written locally while the
# Snakefile is parsed, and only when their content changed, so their mtime says when a request
# changed. Here each is copied into storage, where jobs on other machines read it as an ordinary
# input: a changed request is copied again and makes its image stale, an unchanged one makes
# nothing run. A job's request is always the one the main process decided, never one a job
# derived again from its own environment.
import shutil


rule stage_plan_file:
    input:
        local("results/specs/{path}"),
    output:
        "results/specs/{path}",
    localrule: True
    run:
        shutil.copyfile(input[0], output[0])
