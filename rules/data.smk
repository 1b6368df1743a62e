"""Data stage: fetch the source, check every file, split into train / validation / test."""

from smallcnn import split_sizes

# The schema cannot add numbers: fractions over 1 stop the run here, before any job.
split_sizes.check(config["split"])

# What the prepare and split rules read: a downloaded archive, the user's zip or folder (read in
# place), or the generated demo folder.
DATA_SOURCE = {
    "local": config["data"]["path"],
    "demo": "resources/demo",
}.get(config["data"]["source"], f"resources/downloads/{config['data']['source']}.zip")


rule download:
    output:
        archive="resources/downloads/{source}.zip",
        record="resources/downloads/{source}.json",
    log:
        "logs/download/{source}.log",
    wildcard_constraints:
        source="microsoft|kaggle|url",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        source="{source}",
        url=config["data"]["url"],
        sha256=config["data"]["sha256"],
        competition=config["data"]["kaggle_competition"],
    script:
        "../scripts/download.py"


rule make_demo:
    output:
        directory("resources/demo"),
    log:
        "logs/make_demo.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        seed=config["seed"],
        per_class=split_sizes.images_needed(config["split"]),
    script:
        "../scripts/make_demo.py"


rule prepare:
    input:
        source=DATA_SOURCE,
    output:
        manifest="results/data/manifest.csv",
        rejections="results/data/rejections.json",
        near_duplicates="results/data/near_duplicates.json",
    log:
        "logs/prepare.log",
    benchmark:
        "benchmarks/prepare.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        min_side=config["data"]["min_side"],
        max_image_pixels=config["data"]["max_image_pixels"],
        max_archive_bytes=config["data"]["max_archive_bytes"],
        near_duplicates=config["data"]["near_duplicates"],
    script:
        "../scripts/prepare.py"


rule split:
    input:
        source=DATA_SOURCE,
        manifest="results/data/manifest.csv",
    output:
        splits="results/data/splits.csv",
        train=directory("results/data/train"),
        validation=directory("results/data/validation"),
        test=directory("results/data/test"),
        # How many near-duplicate groups this split would have put on two sides unchecked.
        straddling="results/data/near_duplicates_split.json",
    log:
        "logs/split.log",
    benchmark:
        "benchmarks/split.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        split=config["split"],
        seed=config["seed"],
    script:
        "../scripts/split.py"
