from smallcnn.logs import job_log

with job_log(snakemake.log[0]):
    # Imported inside the block: it imports TensorFlow, whose start-up messages belong in the log.
    from smallcnn.weights import fetch_imagenet_weights

    fetch_imagenet_weights(snakemake.params.base, snakemake.output[0])
