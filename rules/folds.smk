"""k-fold partitions of the train + validation images: one per training seed (cross_validation)."""


rule folds:
    input:
        splits="results/data/splits.csv",
    output:
        "results/data/folds/{seed}.csv",
    log:
        "logs/folds/{seed}.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        folds=config["cross_validation"]["folds"],
        split_seed=config["seed"],
        code=code("folds"),
    script:
        "../scripts/folds.py"


# One file per seed above, so that adding a seed retrains no other seed's folds; this table of
# them all is for the user and the report.
rule folds_table:
    input:
        expand("results/data/folds/{seed}.csv", seed=SEEDS),
    output:
        "results/data/folds.csv",
    log:
        "logs/folds/table.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code("folds_table"),
    script:
        "../scripts/folds_table.py"
