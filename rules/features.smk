"""Run a conv base once over each split and keep its output in HDF5."""


rule extract_features:
    input:
        images="results/data/{split}",
        # The weights named by the path, whatever the config's default base is.
        weights=extraction_weights,
    output:
        "results/features/{base}/{weights}/{split}.h5",
    log:
        "logs/features/{base}/{weights}/{split}.log",
    benchmark:
        "benchmarks/features/{base}/{weights}/{split}.tsv"
    retries: 1
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=120,
        gpu=1,
    params:
        # Not unfreeze_from: changing it must not recompute the features.
        conv_base=lambda wc: {"name": wc.base, "weights": declared_weights(wc)},
        image_size=config["image_size"],
        seed=config["seed"],
        precision=config["precision"],
        batch_size=32,
        code=code("extract_features"),
    script:
        "../scripts/extract_features.py"
