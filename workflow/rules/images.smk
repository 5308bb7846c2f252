rule generate_image:
    input:
        spec="results/specs/{folder}/{image_id}.json",
    output:
        png=report(
            "results/images/{folder}/{image_id}.png",
            caption="../report/image.rst",
            category="Images",
            subcategory=gallery.context,
            labels=gallery.labels,
        ),
        sidecar="results/images/{folder}/{image_id}.json",
    log:
        "results/logs/images/{folder}/{image_id}.log",
    threads: 0  # waits on the API; the `api` resource, not --cores, bounds concurrency
    resources:
        api=1,
    run:
        worker.make_image(
            input.spec,
            output.png,
            output.sidecar,
            log[0],
            SETTINGS,
            in_worker=worker.wanted(workflow),
        )
