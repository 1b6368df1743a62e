"""What the workflow needs when it runs with a default storage provider (object storage, e.g.
`--default-storage-provider s3`, profiles/kubernetes), where jobs may run on machines that share
no filesystem with the one that runs Snakemake (pods).

Each such job parses the Snakefile again where it runs, with the same config but none of this
machine's files. Two values the Snakefile computes from local files must then come from
Snakemake's own process instead:
- the id of a declared weights file (its name and content hash, part of the features paths):
  computed here, passed to jobs in the environment variable WEIGHTS_IDS, which the Snakefile
  declares with `envvars:` so that every executor hands it to its jobs (the Kubernetes executor
  through a Secret);
- the fingerprint of a local data source: only `prepare` and `split` use it, and with object
  storage they are local rules (the Snakefile), so no job elsewhere needs it.

Standard library only at import: the Snakefile imports it while it builds the DAG.
"""

import json
import os
from pathlib import Path

WEIGHTS_IDS = "SMALLCNN_WEIGHTS_IDS"
# Declared weights files are copied into storage here (rule stage_weights), named by their id.
STAGED_WEIGHTS = "resources/weights/declared/{weights}.weights.h5"


def prepare(workflow):
    """Call once from the Snakefile when a default storage provider is set."""
    if workflow.storage_settings.default_storage_provider == "s3":
        fix_s3_directory_outputs()
    if not workflow.remote_exec:
        # Snakemake's own process: the table starts empty and is filled by weights_id (a value
        # left in the caller's environment must not stand in for a file that is missing).
        os.environ[WEIGHTS_IDS] = "{}"


def weights_id(weights, compute):
    """The id of declared weights: `compute(weights)` where the file is (and recorded in the
    environment for the jobs), the id Snakemake's process recorded where it is not (a job on
    another machine). Otherwise `compute` reports the missing file.

    `compute` is experiments.weights_id, which hashes a file once per process while its path,
    size and mtime stay: asking again where the file is costs a stat, and a file changed since
    gets its new id (recorded over the old one)."""
    known = json.loads(os.environ.get(WEIGHTS_IDS) or "{}")
    if weights in ("imagenet", "none") or Path(weights).is_file() or weights not in known:
        known[weights] = compute(weights)
        os.environ[WEIGHTS_IDS] = json.dumps(known, sort_keys=True)
    return known[weights]


def declared_benchmark(rule, workflow):
    """`rule.benchmark` (a `rules.<name>` proxy) as the rule declares it, for another rule's
    input. With a default storage provider Snakemake 9.27 gives a rule's benchmark as the path of
    its local copy (.snakemake/storage/s3/...), which an input would map into storage a second
    time (it does this right for `log` only); the storage object still has the declared path,
    after the prefix."""
    from snakemake.io import strip_wildcard_constraints

    declared = rule.rule.benchmark
    if not declared.is_storage:
        return str(rule.benchmark)
    prefix = workflow.storage_settings.default_storage_prefix.rstrip("/") + "/"
    return strip_wildcard_constraints(declared.storage_object.query.removeprefix(prefix))


def fix_s3_directory_outputs():
    """Let Snakemake's S3 storage plugin see a directory output that another machine uploaded.

    snakemake-storage-plugin-s3 0.3.6 decides once per storage object whether its key is a
    "directory" (a prefix of other keys), and keeps a negative answer too. Snakemake asks
    before the job runs (nothing there yet: not a directory); after a job that ran elsewhere
    (a pod) uploaded the folder, it asks the same object again, which still answers "not a
    directory", so "missing": the job fails with MissingOutputException although every file is
    in the bucket. Jobs run by Snakemake's own process are not affected (their upload sets the
    answer). This asks the bucket again while the answer is negative.
    """
    from snakemake_storage_plugin_s3 import StorageObject

    if getattr(StorageObject.is_dir, "rechecks_missing", False):
        return

    def is_dir(self):
        if not self._is_dir:
            self._is_dir = any(self.get_subkeys())
        return self._is_dir

    is_dir.rechecks_missing = True
    StorageObject.is_dir = is_dir
