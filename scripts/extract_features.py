from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.features import extract_features

    extract_features(
        images=snakemake.input.images,
        out=snakemake.output[0],
        conv_base=dict(snakemake.params.conv_base),
        weights=snakemake.input.weights or None,
        image_size=tuple(snakemake.params.image_size),
        batch_size=snakemake.params.batch_size,
        precision=snakemake.params.precision,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
