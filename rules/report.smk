"""The comparison report: one self-contained HTML file."""


rule report:
    input:
        metrics=expand("results/metrics/{name}.json", name=EXPERIMENTS),
        predictions=expand("results/predictions/{name}.csv", name=EXPERIMENTS),
        histories=expand("results/history/{name}.csv", name=EXPERIMENTS),
        summaries=expand("results/models/{name}.json", name=EXPERIMENTS),
        manifest="results/data/manifest.csv",
        rejections="results/data/rejections.json",
        splits="results/data/splits.csv",
        train="results/data/train",
    output:
        html="results/report.html",
    log:
        "logs/report.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        experiments=EXPERIMENTS,
        config=config,
        benchmarks_dir="benchmarks",
        misclassified=config["report"]["misclassified"],
        augmentation=config["augmentation"],
        augmentation_examples=config["report"]["augmentation_examples"],
        image_size=config["image_size"],
        seed=config["seed"],
    script:
        "../scripts/report.py"
