"""Each trained model on the test split."""


rule evaluate:
    input:
        model="results/models/{name}.keras",
        summary="results/models/{name}.json",
        test=test_input,
    output:
        metrics="results/metrics/{name}.json",
        predictions="results/predictions/{name}.csv",
    log:
        "logs/evaluate/{name}.log",
    benchmark:
        "benchmarks/evaluate/{name}.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        image_size=config["image_size"],
        batch_size=32,
    script:
        "../scripts/evaluate.py"
