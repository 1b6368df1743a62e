from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: cleanlab and scikit-learn log as they load.
    from smallcnn.label_issues import find_for_best

    find_for_best(
        oof=list(snakemake.input.oof),
        metrics=list(snakemake.input.metrics),
        splits=snakemake.input.splits,
        experiments=list(snakemake.params.experiments),
        primary_setting=snakemake.params.primary_metric,
        out=snakemake.output[0],
    )
