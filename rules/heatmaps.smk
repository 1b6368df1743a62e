"""Class-activation heatmaps (Grad-CAM) of each experiment's first seed, for the report."""


def heatmap_inputs(wildcards):
    """The model, its errors file and the test images; a features model also needs the test
    features and the weights of the conv base they came from, to be explained through it.
    """
    experiment = EXPERIMENTS[wildcards.experiment]
    inputs = {
        "model": f"results/models/{experiment.name}/{wildcards.seed}.keras",
        "errors": f"results/errors/{experiment.name}/{wildcards.seed}.csv",
        "test": "results/data/test",
    }
    if experiment.kind == "features":
        base = experiment.conv_base
        inputs["test_features"] = f"{features_dir(experiment)}/test.h5"
        inputs["weights"] = weights_file(base["name"], base["weights"])
    return inputs


# A layer per experiment must name declared experiments: a misspelt one would be ignored.
if isinstance(config["report"].get("heatmap_layer"), dict):
    unknown = sorted(set(config["report"]["heatmap_layer"]) - set(NAMES))
    if unknown:
        sys.exit(
            f"error in config: report.heatmap_layer names {', '.join(unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a declared experiment "
            f"({', '.join(NAMES)})"
        )


def heatmap_layer(wildcards):
    """report.heatmap_layer: one layer name for every model, or one per experiment."""
    setting = config["report"].get("heatmap_layer")
    if isinstance(setting, dict):
        return setting.get(wildcards.experiment)
    return setting


rule heatmaps:
    input:
        unpack(heatmap_inputs),
    output:
        directory("results/heatmaps/{experiment}/{seed}"),
    log:
        "logs/heatmaps/{experiment}/{seed}.log",
    benchmark:
        "benchmarks/heatmaps/{experiment}/{seed}.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        layer=heatmap_layer,
        # The report's "Where the model looks": the most confidently wrong test images, and
        # per class the most confidently right, as JPEG thumbnails of at most this many pixels.
        wrong=6,
        right_per_class=3,
        thumbnail=112,
        # A features model's random conv base is drawn again as the features stage drew it.
        seed=config["seed"],
        precision=config["precision"],
        code=code("heatmaps"),
    script:
        "../scripts/heatmaps.py"
