"""Pretrained weights of the conv base, fetched by their own job, never inside a training job."""


rule fetch_weights:
    output:
        "resources/weights/{base}_imagenet_notop.weights.h5",
    log:
        "logs/fetch_weights/{base}.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        base="{base}",
        code=code("fetch_weights"),
    script:
        "../scripts/fetch_weights.py"
