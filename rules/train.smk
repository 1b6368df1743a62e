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


# With cross_validation.folds: one job per (experiment, seed, fold), trained on the other folds
# and validated on its own (checkpoint, early stopping and learning-rate plateaus follow it).
use rule train as train_fold with:
    input:
        unpack(fold_inputs),
    output:
        model="results/models/{experiment}/{seed}/fold{fold}.keras",
        history="results/history/{experiment}/{seed}/fold{fold}.csv",
        summary="results/models/{experiment}/{seed}/fold{fold}.json",
        tensorboard=directory("results/tensorboard/{experiment}/{seed}/fold{fold}"),
    log:
        "logs/train/{experiment}/{seed}/fold{fold}.log",
    benchmark:
        "benchmarks/train/{experiment}/{seed}/fold{fold}.tsv"
    params:
        settings=fold_params,
        backup_dir="results/backup/{experiment}/{seed}/fold{fold}",
