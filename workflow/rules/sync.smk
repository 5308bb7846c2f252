rule sync:
    input:
        images=image_outputs("png"),
        sidecars=image_outputs("json"),
        destination=plan.DESTINATION_RECORD,
    output:
        "results/_SUCCESS.json",
    log:
        "results/logs/sync.log",
    run:
        sync.sync(
            input.images + input.sidecars,
            PLAN.settings.destination,
            output[0],
            log[0],
            settings=config["sync"],
        )
