rule digest_chunk:
    input:
        members=chunks.members_path("{chunk}"),
        images=chunk_images,
    output:
        "results/sync/chunks/{chunk}.json",
    log:
        "results/logs/chunks/{chunk}.log",
    run:
        sync.write_chunk_digest(input.images, output[0])


rule sync:
    input:
        chunks=expand("results/sync/chunks/{chunk}.json", chunk=sorted(PLAN.chunks)),
        destination=plan.DESTINATION_RECORD,
    output:
        "results/_SUCCESS.json",
    log:
        "results/logs/sync.log",
    run:
        sync.sync(
            None,
            PLAN.settings.destination,
            output[0],
            log[0],
            settings=config["sync"],
            chunk_files=input.chunks,
            prices=config.get("prices"),
        )
