from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: the augmentation grid may import TensorFlow, whose start-up
    # messages belong in the log.
    from smallcnn.report import build_report

    build_report(
        inputs=snakemake.input,
        params=snakemake.params,
        out=snakemake.output.html,
        figures_dir=snakemake.output.figures,
    )
