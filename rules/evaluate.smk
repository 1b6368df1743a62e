"""Each trained model on the test split."""

if FOLDS:

    # Each (experiment, seed)'s fold models together: each predicts its own fold (out of fold)
    # and the test split; the seed's test prediction is their mean probability.
    rule evaluate_folds:
        input:
            unpack(fold_evaluation_inputs),
        output:
            metrics="results/metrics/{experiment}/{seed}.json",
            predictions="results/predictions/{experiment}/{seed}.csv",
            errors="results/errors/{experiment}/{seed}.csv",
            oof="results/oof/{experiment}/{seed}.csv",
        log:
            "logs/evaluate/{experiment}/{seed}.log",
        benchmark:
            "benchmarks/evaluate/{experiment}/{seed}.tsv"
        conda:
            "../envs/smallcnn.yaml"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=120,
            gpu=1,
        params:
            image_size=config["image_size"],
            batch_size=32,
            folds=FOLDS,
            tta_views=tta_views,
            test_images="results/data/test",
            code=code("evaluate_folds"),
        script:
            "../scripts/evaluate_folds.py"

else:

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
            tta_views=tta_views,
            # Where the test images are, to name them in the errors file (the features experiment
            # is evaluated on their features).
            test_images="results/data/test",
            code=code("evaluate"),
        script:
            "../scripts/evaluate.py"


# The rule that writes results/metrics/{experiment}/{seed}.json, for the report's benchmarks.
EVALUATE_RULE = rules.evaluate_folds if FOLDS else rules.evaluate
