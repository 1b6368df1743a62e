"""A Snakemake executor for tests that runs each job the way the Kubernetes executor runs a pod,
on this machine: a fresh, empty working directory, no environment but PATH and what Snakemake
passes to jobs (the storage plugin's settings, `envvars:`), and the same job command
(`RemoteExecutor.format_job_exec`: the sources are deployed from the bucket, the Snakefile is
parsed again, inputs are downloaded from and outputs uploaded to the default storage). The
directory is deleted when the job ends, as a pod's emptyDir is.

With `--pods-hide DIR`, each pod runs in a mount namespace of its own where an empty tmpfs
covers DIR (needs root): the files of the machine that runs Snakemake (its working directory, a
local data source, a weights file) are not there, as on a real cluster node.

What it does not simulate: the container image (it runs this virtualenv's python) and the
scheduler (each job is a subprocess). The Kubernetes executor itself is checked by a dry run in
tests/test_s3.py.

Found by Snakemake as `--executor pods` when tests/plugins is on PYTHONPATH.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

# The Kubernetes executor's settings (snakemake-executor-plugin-kubernetes 0.5.1), except that
# the storage plugin is installed already instead of with pip in each pod.
common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=True,
    job_deploy_sources=True,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,
    auto_deploy_default_storage_provider=False,
)


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    # Optional[], not `str | None`: Snakemake makes the option's argparse type of it.
    hide: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={"help": "A folder of this machine that the pods must not see (needs root)."},
    )


class Executor(RemoteExecutor):
    def __post_init__(self):
        # Each pod's output, as the Kubernetes executor keeps it in
        # .snakemake/auxiliary/kubernetes-logs.
        self.log_dir = self.workflow.persistence.aux_path / "pod-logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def run_job(self, job):
        command = self.format_job_exec(job)
        workdir = Path(tempfile.mkdtemp(prefix="pod-"))
        log = self.log_dir / f"{job.jobid}-{job.attempt}.log"
        env = {
            # The image's python: this virtualenv's (the job command calls `python`).
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            # What the Kubernetes executor puts in the pod's environment through a Secret.
            **self.envvars(),
        }
        argv = ["/bin/sh", "-c", command]
        hide = self.workflow.executor_settings.hide
        if hide:
            cover = 'mount -t tmpfs pod-hides "$0" && exec /bin/sh -c "$1"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                cover,
                hide,
                command,
            ]
        with open(log, "w") as stream:
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.report_job_submission(
            SubmittedJobInfo(
                job,
                external_jobid=str(process.pid),
                aux={"process": process, "workdir": workdir, "log": log},
            )
        )

    async def check_active_jobs(self, active_jobs):
        for info in active_jobs:
            returncode = info.aux["process"].poll()
            if returncode is None:
                yield info
                continue
            shutil.rmtree(info.aux["workdir"], ignore_errors=True)
            if returncode == 0:
                self.report_job_success(info)
            else:
                self.report_job_error(
                    info,
                    msg=f"pod exited with {returncode}: see {info.aux['log']}",
                    aux_logs=[str(info.aux["log"])],
                )

    def cancel_jobs(self, active_jobs):
        for info in active_jobs:
            info.aux["process"].terminate()
            info.aux["process"].wait()
            shutil.rmtree(info.aux["workdir"], ignore_errors=True)
