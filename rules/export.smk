"""Deployable copies of trained models, their parity measured on the test split."""

from smallcnn import export_plan

EXPORT = config["export"]
# One model per experiment: the first seed's (with folds, its fold 0 model: model_stem).
EXPORT_SEED = SEEDS[0]
try:
    EXPORTED = export_plan.exported(EXPORT["experiments"], EXPERIMENTS)
except UserError as error:
    sys.exit(f"error in config: {error}")
# What the report says of the experiments that `all` leaves out.
NOT_EXPORTED = export_plan.left_out(EXPORT["experiments"], EXPERIMENTS)


rule export:
    input:
        unpack(
            lambda wc: export_plan.inputs(
                EXPERIMENTS[wc.experiment],
                model_stem(wc.experiment, wc.seed),
                EXPORT["formats"],
                features_dir,
                weights_file,
            )
        ),
    output:
        # A folder: a format whose converter refuses the model leaves no file, and the
        # artifacts of formats no longer asked for go with the folder on a rerun.
        directory("results/export/{experiment}/{seed}"),
    log:
        "logs/export/{experiment}/{seed}.log",
    benchmark:
        "benchmarks/export/{experiment}/{seed}.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        formats=EXPORT["formats"],
        allow_mismatch=EXPORT["allow_mismatch"],
        representative_images=EXPORT["representative_images"],
        latency_runs=EXPORT["latency_runs"],
        # Which training images calibrate int8: the split's seed.
        seed=config["seed"],
        code=code("export"),
    script:
        "../scripts/export.py"


# `snakemake exports`: every export, without the report.
rule exports:
    input:
        expand(
            "results/export/{experiment}/{seed}", experiment=EXPORTED, seed=EXPORT_SEED
        ),
