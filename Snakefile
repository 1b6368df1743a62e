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
# offline, and a transfer should not hold a GPU allocation. Declared weights files are copied
# into object storage there too (stage_weights, used only with a default storage provider).
localrules:
    download,
    fetch_weights,
    stage_weights,


# With a default storage provider (`--default-storage-provider s3`, profiles/kubernetes) jobs
# may run where nothing of this machine is: see smallcnn/object_storage.py.
from smallcnn import object_storage

OBJECT_STORAGE = workflow.storage_settings.default_storage_provider is not None
if OBJECT_STORAGE:
    object_storage.prepare(workflow)

    envvars:
        object_storage.WEIGHTS_IDS,

    # The report gives the git commit of the code; jobs elsewhere get the workflow's files
    # without their history.
    localrules:
        report,

    # A local data source exists only on this machine: the rules that read it run here, and
    # their products (manifest, split) are uploaded like every output. So does data.corrections.
    if config["data"]["source"] == "local":

        localrules:
            prepare,
            split,

    elif config["data"]["corrections"]:

        localrules:
            prepare,


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/folds.smk"
include: "rules/weights.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/export.smk"
include: "rules/heatmaps.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
