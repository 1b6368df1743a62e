from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.export import export

    export(
        model_path=snakemake.input.model,
        summary_path=snakemake.input.summary,
        out_dir=snakemake.output[0],
        test_dir=snakemake.input.test,
        formats=list(snakemake.params.formats),
        allow_mismatch=list(snakemake.params.allow_mismatch),
        train_dir=snakemake.input.get("train"),
        weights_path=snakemake.input.get("weights"),
        test_features=snakemake.input.get("test_features"),
        representative_count=snakemake.params.representative_images,
        latency_runs=snakemake.params.latency_runs,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
