from smallcnn.logs import job_log
from smallcnn.summary_csv import write_summary

with job_log(snakemake.log[0]):
    write_summary(
        metrics=list(snakemake.input.metrics),
        experiments=list(snakemake.params.experiments),
        out=snakemake.output[0],
    )
