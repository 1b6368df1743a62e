from smallcnn.folds import concatenate
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    concatenate(list(snakemake.input), snakemake.output[0])
