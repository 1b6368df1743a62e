from smallcnn.data import split
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    split(
        source=snakemake.input.source,
        manifest=snakemake.input.manifest,
        splits=snakemake.output.splits,
        out_dirs={name: snakemake.output[name] for name in ("train", "validation", "test")},
        settings=dict(snakemake.params.split),
        seed=snakemake.params.seed,
        straddling=snakemake.output.straddling,
    )
