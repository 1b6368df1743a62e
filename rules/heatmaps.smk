"""Class-activation heatmaps (Grad-CAM) of each experiment's first seed, for the report."""


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
