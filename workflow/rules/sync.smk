rule digest_chunk:
    input:
        members=chunks.members_path("{chunk}"),
        images=chunk_images,
    output:
        "results/sync/chunks/{chunk}.json",
    log:
        "results/logs/chunks/{chunk}.log",
    run:
        sync.write_chunk_digest(input.images, output[0], names=chunk_names(wildcards.chunk))


rule sync:
    input:
        chunks=expand("results/sync/chunks/{chunk}.json", chunk=sorted(PLAN.chunks)),
        destination=plan.DESTINATION_RECORD,
        # With a storage provider the images are not on this job's filesystem: they are inputs
        # here (fetched from storage), not only named in the chunk digests.
        images=[f"results/images/{name}" for name in all_image_names()] if STORAGE else [],
    output:
        "results/_SUCCESS.json",
    log:
        "results/logs/sync.log",
    run:
        sync.sync_job(input, output[0], log[0], config, STORAGE and all_image_names())
