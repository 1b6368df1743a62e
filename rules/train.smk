"""One training loop for every experiment; they differ only in their params."""


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/models/{name}.keras",
        history="results/history/{name}.csv",
        summary="results/models/{name}.json",
        tensorboard=directory("results/tensorboard/{name}"),
    log:
        "logs/train/{name}.log",
    benchmark:
        "benchmarks/train/{name}.tsv"
    retries: 1
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=720,
        gpu=1,
    params:
        settings=train_params,
        # Not a declared output: Snakemake deletes outputs before a rerun, the backup must survive.
        backup_dir="results/backup/{name}",
    script:
        "../scripts/train.py"
