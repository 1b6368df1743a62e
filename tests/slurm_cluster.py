"""A private single-node SLURM cluster for the tests.

`run_in_cluster` starts munged, slurmctld and slurmd inside private network and mount namespaces
(`unshare -n -m`), runs one command against them (typically Snakemake with a SLURM profile), records
what SLURM saw, and stops the daemons by PID, always. Run as a script, this module is the driver
that does this inside the namespace; it uses only the standard library.

The node has two CPUs and one fake GPU (`Gres=gpu:fake:1` backed by /dev/null), so `--gpus`
requests are scheduled and accounted for exactly as on a real GPU node while the job itself runs
on the CPU. There is no slurmdbd: `sacct` does not work, job states come from `squeue` and
`scontrol`, which keep finished jobs for MinJobAge seconds.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_EXECUTABLES = (
    "unshare",
    "ip",
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
    "mount",
)
# The configuration is bind-mounted here inside the private mount namespace: the SLURM executor
# plugin's job step drops SLURM_* variables (SLURM_CONF too) before calling srun, so srun only
# finds a configuration at the default path.
SLURM_ETC = Path("/etc/slurm")
# Jobs stay visible to squeue/scontrol this long after they end. The SLURM executor plugin only
# trusts squeue when this is at least 3x its wait before the first status check.
MIN_JOB_AGE = 600
# Configured, not detected (SlurmdParameters=config_overrides): the rules ask for up to 16 GB, and
# the test must not depend on the memory of the machine it runs on.
REAL_MEMORY_MB = 64000
NODE_CPUS = 2
GPU_TYPE = "fake"
DAEMON_NAMES = ("munged", "slurmctld", "slurmd")


def why_not_runnable():
    """The reason a cluster cannot be started on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "needs root: it starts slurmctld, slurmd and munged in a private network namespace"
    missing = [name for name in REQUIRED_EXECUTABLES if shutil.which(name) is None]
    if missing:
        return (
            f"missing {', '.join(missing)}: install the Debian packages slurm-wlm, munge, "
            "iproute2 and util-linux (.ci/run does)"
        )
    if not SLURM_ETC.is_dir():
        return f"{SLURM_ETC} is absent (the slurm-wlm package creates it)"
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n -m` is not permitted here: {probe.stderr.strip()}"
    return None


@dataclass
class ClusterRun:
    """What happened: the command's exit status and output, and every job SLURM still knew."""

    returncode: int
    timed_out: bool
    stdout: str
    stderr: str
    jobs: list = field(default_factory=list)
    error: str | None = None
    directory: Path = None

    def log(self, name):
        """A daemon's log (slurmctld, slurmd, munged), for failure messages."""
        return _read(self.directory / "log" / f"{name}.log")

    def explain(self):
        """Everything needed to see why a run failed, tails first."""
        return "\n".join(
            [
                f"returncode={self.returncode} timed_out={self.timed_out} error={self.error}",
                f"--- stdout (tail)\n{self.stdout[-6000:]}",
                f"--- stderr (tail)\n{self.stderr[-12000:]}",
                f"--- jobs\n{json.dumps(self.jobs, indent=1)[-6000:]}",
                f"--- slurmctld.log (tail)\n{self.log('slurmctld')[-3000:]}",
                f"--- slurmd.log (tail)\n{self.log('slurmd')[-3000:]}",
            ]
        )


def run_in_cluster(directory, command, *, cwd, partitions, env=None, timeout=900):
    """Run `command` in `cwd` against a fresh cluster whose files live in `directory`.

    `partitions` names the partitions to create, all on the one node, the first the default.
    The command is killed after `timeout` seconds; the daemons are stopped in every case.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    request = {
        "command": [str(part) for part in command],
        "cwd": str(cwd),
        "partitions": list(dict.fromkeys(partitions)),
        "env": dict(os.environ if env is None else env),
        "timeout": timeout,
    }
    (directory / "request.json").write_text(json.dumps(request))
    try:
        # The driver needs time beyond the command's own timeout to start and stop the daemons.
        driver = subprocess.run(
            ["unshare", "-n", "-m", sys.executable, __file__, str(directory)],
            capture_output=True,
            text=True,
            timeout=timeout + 240,
        )
    finally:
        stop_leftover_daemons(directory)
    result_path = directory / "result.json"
    if not result_path.exists():
        raise RuntimeError(
            f"the cluster driver ended ({driver.returncode}) without a result:\n"
            f"{driver.stdout[-4000:]}\n{driver.stderr[-8000:]}"
        )
    result = json.loads(result_path.read_text())
    return ClusterRun(
        returncode=result["returncode"],
        timed_out=result["timed_out"],
        stdout=_read(directory / "command.out"),
        stderr=_read(directory / "command.err"),
        jobs=result["jobs"],
        error=result["error"],
        directory=directory,
    )


def _read(path):
    return path.read_text(errors="replace") if path.exists() else ""


def stop_leftover_daemons(directory):
    """Kill the daemons this cluster started if the driver could not (it was killed itself)."""
    pids_path = Path(directory) / "pids.json"
    if not pids_path.exists():
        return
    for name, pid in json.loads(pids_path.read_text()).items():
        if _is_running(pid, name):
            os.kill(pid, signal.SIGKILL)


def parse_scontrol_oneliners(text):
    """`scontrol show job --oneliner` output as one dict per job (values may contain spaces)."""
    jobs = []
    for line in text.splitlines():
        if not line.startswith("JobId="):
            continue
        pairs = re.findall(r"(?:^|\s)([A-Za-z][\w:/]*)=(.*?)(?=\s+[A-Za-z][\w:/]*=|\s*$)", line)
        jobs.append(dict(pairs))
    return jobs


# ---------------------------------------------------------------------------------------------
# The driver: runs inside the private network namespace.


def _is_running(pid, name):
    """True if `pid` is alive and is the daemon `name` (a PID may have been reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(command.decode(errors="replace")) == name


def _write_config(directory, hostname, partitions):
    for sub in ("etc", "state", "spool", "log", "munge"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    munge_dir = directory / "munge"
    munge_dir.chmod(0o700)
    key = munge_dir / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    socket_path = munge_dir / "munge.socket"
    if len(str(socket_path)) > 100:
        raise RuntimeError(f"{socket_path} is too long for a Unix socket: use a shorter directory")
    socket_path.unlink(missing_ok=True)
    lines = [
        "ClusterName=smallcnn-test",
        f"SlurmctldHost={hostname}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # A munged of our own: the test must not depend on (or disturb) a system munged.
        f"AuthInfo=socket={socket_path}",
        f"StateSaveLocation={directory / 'state'}",
        f"SlurmdSpoolDir={directory / 'spool'}",
        f"SlurmctldPidFile={directory / 'slurmctld.pid'}",
        f"SlurmdPidFile={directory / 'slurmd.pid'}",
        f"SlurmctldLogFile={directory / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={directory / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # No cgroups (no systemd here): track job processes through /proc, bind nothing.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        # cons_tres is what schedules --gpus; cores are the consumable.
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        f"MinJobAge={MIN_JOB_AGE}",
        # Trust the node description below rather than this machine's real size.
        "SlurmdParameters=config_overrides",
        "GresTypes=gpu",
        f"NodeName={hostname} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} "
        f"RealMemory={REAL_MEMORY_MB} Gres=gpu:{GPU_TYPE}:1 State=UNKNOWN",
    ]
    for index, name in enumerate(partitions):
        default = "YES" if index == 0 else "NO"
        lines.append(
            f"PartitionName={name} Nodes={hostname} Default={default} MaxTime=INFINITE State=UP"
        )
    (directory / "etc" / "slurm.conf").write_text("\n".join(lines) + "\n")
    # A fake GPU: SLURM allocates and accounts for it; nothing can use /dev/null as a GPU.
    (directory / "etc" / "gres.conf").write_text(f"Name=gpu Type={GPU_TYPE} File=/dev/null\n")
    return socket_path


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {seconds} s waiting for {what}")


def _query(command, env):
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    return result.stdout if result.returncode == 0 else ""


def _run_command(request, env, directory):
    """Run the command in its own process group; kill the group at the timeout."""
    with (
        open(directory / "command.out", "w") as out,
        open(directory / "command.err", "w") as err,
    ):
        process = subprocess.Popen(
            request["command"],
            cwd=request["cwd"],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=request["timeout"]), False
        except subprocess.TimeoutExpired:
            # Ctrl-C first: Snakemake then cancels its SLURM jobs (on SIGTERM it would wait for
            # them to finish).
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return process.returncode, True


def _cancel_all_jobs(env):
    """Cancel jobs still queued or running (a timed-out run), so that no job outlives slurmd."""
    unfinished = _query(["squeue", "--noheader", "--format=%i"], env).split()
    if unfinished:
        subprocess.run(["scancel", *unfinished], env=env, capture_output=True, timeout=30)
        _wait_for(
            lambda: not _query(["squeue", "--noheader", "--format=%i"], env).strip(),
            60,
            "cancelled jobs to end",
        )


def _stop(processes):
    """Stop the daemons in the reverse order of their start (munged last)."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drive(directory):
    request = json.loads((directory / "request.json").read_text())
    result = {"returncode": None, "timed_out": False, "jobs": [], "error": None}
    hostname = socket.gethostname().split(".")[0]
    # In a new network namespace even loopback is down; glibc also needs a second loopback
    # address before the SLURM clients resolve 127.0.0.1.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"], check=True)
    socket_path = _write_config(directory, hostname, request["partitions"])
    # Private to this mount namespace (unshare makes mounts private): invisible outside it.
    subprocess.run(["mount", "--bind", str(directory / "etc"), str(SLURM_ETC)], check=True)
    env = {key: value for key, value in request["env"].items() if key != "SLURM_CONF"}
    daemon_env = {key: value for key, value in os.environ.items() if key != "SLURM_CONF"}
    pids = {}
    processes = []
    try:
        munge_dir = directory / "munge"
        munged = [
            "munged",
            "--foreground",
            "--force",
            f"--socket={socket_path}",
            f"--key-file={munge_dir / 'munge.key'}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
            f"--log-file={directory / 'log' / 'munged.log'}",
        ]
        # All in the foreground, as children of this driver: stopped and reaped by it.
        for name, arguments in (
            ("munged", munged),
            ("slurmctld", ["slurmctld", "-D", "-i"]),
            ("slurmd", ["slurmd", "-D", "-N", hostname]),
        ):
            with open(directory / "log" / f"{name}.stderr", "w") as stderr:
                process = subprocess.Popen(
                    arguments, env=daemon_env, stdout=stderr, stderr=subprocess.STDOUT
                )
            processes.append(process)
            pids[name] = process.pid
            (directory / "pids.json").write_text(json.dumps(pids))
            if name == "munged":
                _wait_for(socket_path.exists, 30, "munged's socket")
        _wait_for(
            lambda: (
                _query(["sinfo", "--noheader", "--format=%T", "--nodes", hostname], env)
                .strip()
                .startswith("idle")
            ),
            90,
            "the node to become idle",
        )
        result["returncode"], result["timed_out"] = _run_command(request, env, directory)
        result["jobs"] = parse_scontrol_oneliners(
            _query(["scontrol", "show", "job", "--oneliner"], env)
        )
    except Exception as error:  # noqa: BLE001 - reported to the test, which shows it
        result["error"] = f"{type(error).__name__}: {error}"
        if result["returncode"] is None:
            result["returncode"] = -1
    finally:
        try:
            if processes:
                _cancel_all_jobs(env)
        finally:
            _stop(processes)
            (directory / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    _drive(Path(sys.argv[1]))
