"""Each trained model on the test split."""

from smallcnn import tta

try:
    TTA_VIEWS = tta.view_names(
        config["evaluation"]["tta"], config["augmentation"]["horizontal_flip"]
    )
except UserError as error:
    sys.exit(f"error in config: evaluation.tta: {error}")


rule evaluate:
    input:
        model="results/models/{experiment}/{seed}.keras",
        summary="results/models/{experiment}/{seed}.json",
        test=test_input,
    output:
        metrics="results/metrics/{experiment}/{seed}.json",
        predictions="results/predictions/{experiment}/{seed}.csv",
        # Every test image ranked by its loss, with its path: the errors, file by file.
        errors="results/errors/{experiment}/{seed}.csv",
    log:
        "logs/evaluate/{experiment}/{seed}.log",
    benchmark:
        "benchmarks/evaluate/{experiment}/{seed}.tsv"
    conda:
        "../envs/smallcnn.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        # It runs the trained model over the test split: as fast on a GPU as training is, and on
        # a one-GPU workstation the local limit of one gpu job keeps it from starting beside a
        # training job and running the GPU out of memory.
        gpu=1,
    params:
        image_size=config["image_size"],
        batch_size=32,
        # No views for experiments that take features, not images: evaluation.tta never reruns
        # them.
        tta_views=lambda wc: (
            []
            if registry.KINDS[EXPERIMENTS[wc.experiment].kind].trains_on_features
            else TTA_VIEWS
        ),
        # Where the test images are, to name them in the errors file (the features experiment
        # is evaluated on their features).
        test_images="results/data/test",
        code=code("evaluate"),
    script:
        "../scripts/evaluate.py"
