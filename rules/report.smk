"""The comparison report: one self-contained HTML file."""


def report_benchmarks(wildcards):
    """The benchmark files of every job the report depends on, so that it can show their wall
    time and memory (a missing one reruns its job)."""
    files = [rules.prepare.benchmark, rules.split.benchmark]
    if "features" in EXPERIMENTS:
        files += expand(rules.extract_features.benchmark, base=BASE, split=SPLITS)
    files += expand(rules.train.benchmark, name=TRAINED)
    files += expand(rules.evaluate.benchmark, name=EXPERIMENTS)
    return files


def report_augmentation():
    """The augmentation settings when a reported experiment trains with them, else None (the
    report then shows no augmentation grid)."""
    if any(config["training"][name].get("augment") for name in EXPERIMENTS):
        return dict(config["augmentation"])
    return None


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
        benchmarks=report_benchmarks,
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
        benchmarks_dir="benchmarks",
        misclassified=config["report"]["misclassified"],
        augmentation=report_augmentation(),
        augmentation_examples=config["report"]["augmentation_examples"],
        image_size=config["image_size"],
        seed=config["seed"],
    script:
        "../scripts/report.py"
