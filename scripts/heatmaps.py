from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.heatmap_examples import write_examples

    write_examples(
        model_path=snakemake.input.model,
        errors_path=snakemake.input.errors,
        test_dir=snakemake.input.test,
        out_dir=snakemake.output[0],
        layer=snakemake.params.layer,
        wrong=snakemake.params.wrong,
        right_per_class=snakemake.params.right_per_class,
        thumbnail=snakemake.params.thumbnail,
        test_features=snakemake.input.get("test_features"),
        weights=snakemake.input.get("weights") or None,
        seed=snakemake.params.seed,
        precision=snakemake.params.precision,
        threads=snakemake.threads,
    )
