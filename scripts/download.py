from smallcnn.download import fetch_dataset
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    fetch_dataset(
        source=snakemake.params.source,
        url=snakemake.params.url,
        sha256=snakemake.params.sha256,
        competition=snakemake.params.competition,
        archive=snakemake.output.archive,
        record=snakemake.output.record,
    )
