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
        test="results/data/test",
        # Every job the report depends on, for its wall time and memory (a missing file reruns
        # its job).
        benchmarks=[
            rules.prepare.benchmark,
            rules.split.benchmark,
            *expand(
                rules.extract_features.benchmark,
                base=BASE,
                split=SPLITS if "features" in EXPERIMENTS else [],
            ),
            *expand(rules.train.benchmark, name=TRAINED),
            *expand(rules.evaluate.benchmark, name=EXPERIMENTS),
        ],
    output:
        html=report("results/report.html", category="Comparison report"),
        # The same figures as files, for `snakemake --report`: one category per report section.
        figures=report(
            directory("results/report_figures"),
            patterns=["{section}/{figure}.png"],
            category="{section}",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        experiments=EXPERIMENTS,
        # Shown in the report; as a param, any config change also renews the report.
        config=config,
        repo=workflow.basedir,
        misclassified=config["report"]["misclassified"],
        # No augmentation grid (and no TensorFlow) when no reported experiment augments.
        augmentation=(
            config["augmentation"]
            if any(config["training"][name].get("augment") for name in EXPERIMENTS)
            else None
        ),
        augmentation_examples=config["report"]["augmentation_examples"],
        image_size=config["image_size"],
        seed=config["seed"],
    script:
        "../scripts/report.py"
