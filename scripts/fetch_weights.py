from smallcnn.logs import job_log
from smallcnn.weights import fetch_imagenet_weights

with job_log(snakemake.log[0]):
    fetch_imagenet_weights(snakemake.params.base, snakemake.output[0])
