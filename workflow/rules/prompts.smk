# Prompts written by a model (describe: in the config; image_batch.descriptions.prompts). The rows
# whose prompt the response store does not hold yet are grouped in chunks; one job per chunk asks
# the model for each (concurrently, store first), writes results/prompts/<folder>/<id>.txt, then the
# chunk file, named by its content. Their image jobs take the chunk file as input.
rule write_prompts:
    output:
        "results/prompts/_chunks/{prompt_chunk}.{digest}.json",
    log:
        "results/logs/prompts/_chunks/{prompt_chunk}.{digest}.log",
    threads: 0  # waits on the API; the `api` resource, not --cores, bounds concurrency
    resources:
        api=1,
    run:
        prompts.write_chunk(PLAN, output[0], log[0], SETTINGS)
