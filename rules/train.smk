"""One training loop for every experiment; they differ only in their params."""


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/models/{experiment}/{seed}.keras",
        history="results/history/{experiment}/{seed}.csv",
        summary="results/models/{experiment}/{seed}.json",
        tensorboard=directory("results/tensorboard/{experiment}/{seed}"),
    log:
        "logs/train/{experiment}/{seed}.log",
    benchmark:
        "benchmarks/train/{experiment}/{seed}.tsv"
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
        backup_dir="results/backup/{experiment}/{seed}",
    script:
        "../scripts/train.py"
