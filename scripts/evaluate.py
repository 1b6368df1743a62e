from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.evaluation import evaluate

    evaluate(
        model_path=snakemake.input.model,
        summary_path=snakemake.input.summary,
        test=snakemake.input.test,
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        errors_path=snakemake.output.errors,
        test_images=snakemake.params.test_images,
        image_size=tuple(snakemake.params.image_size),
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        tta_views=list(snakemake.params.tta_views),
    )
