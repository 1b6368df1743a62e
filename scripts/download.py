from smallcnn.download import fetch_dataset
from smallcnn.logs import job_log

# The address and sum come from the config, not params: params are stored in .snakemake/metadata
# (the address may hold credentials) and a param change would rerun the download (rules/data.smk).
data = snakemake.config["data"]
with job_log(snakemake.log[0]):
    fetch_dataset(
        source=snakemake.wildcards.source,
        url=data["url"],
        sha256=data["sha256"],
        competition=data["kaggle_competition"],
        archive=snakemake.output.archive,
        record=snakemake.output.record,
    )
