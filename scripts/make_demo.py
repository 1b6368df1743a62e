from smallcnn.demo import make_demo
from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    make_demo(snakemake.output[0], per_class=snakemake.params.per_class, seed=snakemake.params.seed)
