from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.training import train

    train(
        settings=dict(snakemake.params.settings),
        inputs=dict(snakemake.input.items()),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        summary_path=snakemake.output.summary,
        tensorboard_dir=snakemake.output.tensorboard,
        backup_dir=snakemake.params.backup_dir,
        threads=snakemake.threads,
    )
