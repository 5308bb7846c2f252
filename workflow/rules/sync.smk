import re


# The pages' member lists (the sync chunks' and contact sheets'), named by their content: planning
# names them, a real run writes the missing ones (a dry run writes nothing): this rule those of a
# changed page, the digest that takes a list those of its own first run (image_batch.common.addressed).
rule write_plan_file:
    output:
        "results/specs/{kind}/{name}.{digest}.json",
    log:
        "results/logs/plan-files/{kind}/{name}.{digest}.log",  # empty (Snakemake makes it)
    wildcard_constraints:
        kind="_contact-sheets",
        name="[a-z0-9_-]+",
    localrule: True
    run:
        name = f"{wildcards.name}.{wildcards.digest}.json"
        SHEET_MEMBERS.files.write(name, output[0], log[0])


# One job per page of the sheet (image_batch.sync.chunks): the one job that takes the page's PNGs.
rule digest_chunk:
    input:
        unpack(input_function(lambda wildcards: digest_inputs(wildcards.chunk))),
    output:
        "results/sync/chunks/{source}/{chunk}.json",
    log:
        "results/logs/chunks/{source}/{chunk}.log",
    wildcard_constraints:
        source=re.escape(PLAN.source),  # this input sheet's, never another's
    run:
        digest_chunk(wildcards.chunk, input, output[0])


# Where this run syncs, decided while the Snakefile was parsed and written by the run itself: the
# file is named by its content, so a dry run that resolves another destination (another
# S3_BUCKET_NAME, say) names another file and never changes the one a live run reads.
rule record_destination:
    output:
        str(PLAN.destination_record),
    log:
        "results/logs/destination.log",
    localrule: True
    params:
        destination=PLAN.destination_content,
    run:
        upload.write_destination(params.destination, output[0], log[0])


rule sync:
    input:
        chunks=[PLAN.digest_of(chunk) for chunk in PLAN.chunks],
        # the list of pages when it changed (see SYNC_PAGES, workflow/rules/report.smk)
        pages=lambda wildcards: SHEET_MEMBERS.files.input(SYNC_PAGES),
        destination=str(PLAN.destination_record),
        # With a storage provider the images are not on this job's filesystem: they are inputs
        # here (fetched from storage), not only named in the chunk digests.
        images=[f"results/images/{name}" for name in all_image_names()] if STORAGE else [],
    output:
        marker="results/_SUCCESS.json",
        synced=str(PLAN.synced_record),
        sheet=str(PLAN.sheet_record),
    log:
        "results/logs/sync.log",
    params:
        # read now: Snakemake removes the record before the job rewrites it
        before=PLAN.sheet_record_before,
    run:
        sync_job(input, output, log[0], params.before)
