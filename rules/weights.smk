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


# With a default storage provider only (see weights_file): a declared weights file, read in
# place on this machine, copied into storage for the jobs that run elsewhere.
STAGED = {
    weights_id(e.conv_base["weights"]): e.conv_base["weights"]
    for e in EXPERIMENTS.values()
    if OBJECT_STORAGE
    and e.conv_base
    and e.conv_base["weights"] not in ("imagenet", "none")
}


rule stage_weights:
    input:
        lambda wildcards: local(STAGED[wildcards.weights]),
    output:
        object_storage.STAGED_WEIGHTS,
    log:
        "logs/stage_weights/{weights}.log",
    conda:
        "../envs/smallcnn.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    shell:
        "cp -- {input:q} {output:q} 2> {log:q}"
