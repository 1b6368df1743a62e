"""smallcnn: train image classifiers on small datasets the way DLwP ch. 5 teaches."""

import os

from snakemake.utils import min_version, validate

min_version("9.0")


# The defaults; --configfile files and --config values are merged over them.
configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "schemas/config.schema.yaml")

# Scripts import the smallcnn package from this checkout, on this machine and on cluster nodes,
# without the user setting PYTHONPATH (the conda envs do not install it).
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [workflow.basedir, os.getenv("PYTHONPATH")])
    )
)


# Downloads run where Snakemake runs (the login node on a cluster): compute nodes are often
# offline, and a transfer should not hold a GPU allocation.
localrules:
    download,
    fetch_weights,


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/weights.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/heatmaps.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
