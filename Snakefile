"""smallcnn: train image classifiers on small datasets the way DLwP ch. 5 teaches."""

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# The rules' logic lives in the smallcnn package of this checkout; the modules the rules import
# import no TensorFlow, so building the DAG stays fast.
sys.path.insert(0, workflow.basedir)
from smallcnn.redact import redact


# The defaults; --configfile files and --config values are merged over them.
configfile: os.path.join(workflow.basedir, "config.yaml")


try:
    validate(config, "schemas/config.schema.yaml")
except WorkflowError as error:
    # The error quotes the value it refused: data.url with its credentials, say.
    sys.exit(redact(str(error)))

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
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
