"""The machine-readable summary and the comparison report: one self-contained HTML file."""


rule summarize:
    input:
        metrics=per_run("results/metrics/{experiment}/{seed}.json"),
    output:
        "results/summary.csv",
    log:
        "logs/summarize.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        experiments=[{"name": e.name, "kind": e.kind} for e in EXPERIMENTS.values()],
        code=code("summarize"),
    script:
        "../scripts/summarize.py"


rule report:
    input:
        summary="results/summary.csv",
        metrics=per_run("results/metrics/{experiment}/{seed}.json"),
        predictions=per_run("results/predictions/{experiment}/{seed}.csv"),
        errors=per_run("results/errors/{experiment}/{seed}.csv"),
        # Of the first seed of each experiment; the report shows the first-ranked one's and
        # those of every experiment that trains on images.
        heatmaps=expand(
            "results/heatmaps/{experiment}/{seed}", experiment=NAMES, seed=SEEDS[0]
        ),
        histories=per_training("results/history/{experiment}/{seed}.csv"),
        summaries=per_training("results/models/{experiment}/{seed}.json"),
        manifest="results/data/manifest.csv",
        rejections="results/data/rejections.json",
        near_duplicates="results/data/near_duplicates.json",
        near_duplicates_split="results/data/near_duplicates_split.json",
        splits="results/data/splits.csv",
        train="results/data/train",
        test="results/data/test",
        exports=expand(
            "results/export/{experiment}/{seed}", experiment=EXPORTED, seed=EXPORT_SEED
        ),
        # Every job the report depends on, for its wall time and memory (a missing file reruns
        # its job).
        benchmarks=[
            object_storage.declared_benchmark(rules.prepare, workflow),
            object_storage.declared_benchmark(rules.split, workflow),
            *[f"benchmarks/features/{path}.tsv" for path in extractions()],
            *per_training(object_storage.declared_benchmark(rules.train, workflow)),
            *per_run(object_storage.declared_benchmark(EVALUATE_RULE, workflow)),
            *(["benchmarks/label_issues.tsv"] if FOLDS else []),
            *expand(
                object_storage.declared_benchmark(rules.export, workflow),
                experiment=EXPORTED,
                seed=EXPORT_SEED,
            ),
            *expand(
                object_storage.declared_benchmark(rules.heatmaps, workflow),
                experiment=NAMES,
                seed=SEEDS[0],
            ),
        ],
        # With folds: the candidates of the labels worth a second look, and each seed's folds.
        label_issues="results/label_issues.csv" if FOLDS else [],
        # Its thumbnails come from the train and validation folders: both must be here (with
        # object storage a local job gets only its declared inputs).
        validation="results/data/validation" if FOLDS else [],
        folds="results/data/folds.csv" if FOLDS else [],
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
        experiments=report_experiments(),
        seeds=SEEDS,
        # What the report shows of the run besides the experiments. No credentials: a URL's
        # userinfo and query are redacted here, before Snakemake stores params in its metadata.
        run={
            "data": redact(config["data"]),
            "split": config["split"],
            "seed": config["seed"],
            "seeds": SEEDS,
            "image_size": config["image_size"],
            "precision": config["precision"],
            "augmentation": config["augmentation"],
            "evaluation": config["evaluation"],
            "export": EXPORT,
            "cross_validation": config["cross_validation"],
        },
        repo=workflow.basedir,
        misclassified=config["report"]["misclassified"],
        primary_metric=config["report"]["primary_metric"],
        # No augmentation grid (and no TensorFlow) when no reported experiment augments.
        augmentation=(
            config["augmentation"]
            if any(e.settings.get("augment") for e in EXPERIMENTS.values())
            else None
        ),
        augmentation_examples=config["report"]["augmentation_examples"],
        image_size=config["image_size"],
        seed=config["seed"],
        folds=FOLDS,
        tta=config["evaluation"]["tta"],
        not_exported=NOT_EXPORTED,
        code=code("report"),
    script:
        "../scripts/report.py"


# With folds: the candidates of the experiment ranked first by the cross-validated primary
# metric, as the report ranks, from its out-of-fold predictions averaged over the seeds.
rule label_issues:
    input:
        oof=per_run("results/oof/{experiment}/{seed}.csv"),
        metrics=per_run("results/metrics/{experiment}/{seed}.json"),
        splits="results/data/splits.csv",
    output:
        "results/label_issues.csv",
    log:
        "logs/label_issues.log",
    benchmark:
        "benchmarks/label_issues.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        experiments=NAMES,
        primary_metric=config["report"]["primary_metric"],
        code=code("label_issues"),
    script:
        "../scripts/label_issues.py"
