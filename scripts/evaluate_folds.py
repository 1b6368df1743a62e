from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.evaluation import evaluate_folds

    evaluate_folds(
        models=list(snakemake.input.models),
        summaries=list(snakemake.input.summaries),
        folds_path=snakemake.input.folds,
        pooled={"train": snakemake.input.train, "validation": snakemake.input.validation},
        test=snakemake.input.test,
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        oof_path=snakemake.output.oof,
        errors_path=snakemake.output.errors,
        test_images=snakemake.params.test_images,
        image_size=tuple(snakemake.params.image_size),
        batch_size=snakemake.params.batch_size,
        k=snakemake.params.folds,
        seed=int(snakemake.wildcards.seed),
        threads=snakemake.threads,
        tta_views=list(snakemake.params.tta_views),
    )
