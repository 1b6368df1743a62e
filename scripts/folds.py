from smallcnn.folds import write_folds
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    write_folds(
        splits=snakemake.input.splits,
        out=snakemake.output[0],
        k=snakemake.params.folds,
        split_seed=snakemake.params.split_seed,
        seeds=[int(snakemake.wildcards.seed)],
    )
