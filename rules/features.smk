"""Run the conv base once over each split and keep its output in HDF5."""


rule extract_features:
    input:
        images="results/data/{split}",
        weights=conv_base_weights(),
    output:
        "results/features/{base}/{split}.h5",
    log:
        "logs/features/{base}/{split}.log",
    benchmark:
        "benchmarks/features/{base}/{split}.tsv"
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
        conv_base=lambda wc: {
            "name": wc.base,
            "weights": config["conv_base"]["weights"],
        },
        image_size=config["image_size"],
        seed=config["seed"],
        precision=config["precision"],
        batch_size=32,
    script:
        "../scripts/extract_features.py"
