"""A throw-away single-node SLURM cluster for tests and for trying `profiles/slurm` locally.

Everything lives in one directory: its own munge key and socket, slurm.conf, gres.conf,
cgroup.conf, state, spool, logs and pid files. munged, slurmctld and slurmd are started directly as
background daemons (no systemd) on free ports of 127.0.0.1 and stopped again by the pids they
wrote, so nothing else running on the machine is touched. Client commands (sbatch, squeue, ...)
find the cluster through the `SLURM_CONF` environment variable given by `SlurmCluster.env()`.

Needs Debian/Ubuntu's `slurm-wlm` and `munge` packages; `ensure_installed()` installs them with
apt-get when run as root. From a shell:

    python tests/slurm/slurm_cluster.py up /tmp/slurm   # prints `export SLURM_CONF=...`
    python tests/slurm/slurm_cluster.py down /tmp/slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"
# SLURM forgets finished jobs after MinJobAge seconds. The executor plugin only trusts `squeue` for
# job states when that is at least 3x its first status-check delay, and the test lists every job of
# a whole run with `squeue` after the run: an hour.
MIN_JOB_AGE_S = 3600

SLURM_CONF = """\
ClusterName=spacemoc-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers: track processes by parent pid, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge={min_job_age}
ReturnToService=2
# The declared node (CPUs, memory, a GPU) wins over what slurmd detects.
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb}{gres} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""

# A GPU that is no device: SLURM accepts `--gpus`/`--gres=gpu` jobs on this node, the job itself
# sees no CUDA device (the workflow's `device: auto` falls back to CPU).
GRES_CONF = "NodeName={node} Name=gpu File=/dev/null\n"
CGROUP_CONF = "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n"


def missing_commands() -> list[str]:
    needed = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
    return [cmd for cmd in needed if shutil.which(cmd) is None]


def ensure_installed() -> str | None:
    """Install slurm-wlm and munge if missing; return why SLURM is unavailable, or None."""
    if not missing_commands():
        return None
    if not sys.platform.startswith("linux") or shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install slurm-wlm and munge"
    if os.geteuid() != 0:
        return "SLURM is not installed and installing slurm-wlm and munge needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-500:]}"
    if missing_commands():
        return f"still missing after installing {PACKAGES}: {missing_commands()}"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    """One node (this machine, `hostname -s`) in one partition, state kept under `root`."""

    def __init__(
        self, root: Path | str, cpus: int | None = None, mem_mb: int = 64000, gpus: int = 1
    ):
        self.root = Path(root).resolve()
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb
        self.gpus = gpus
        self.conf = self.root / "slurm.conf"
        self.partition = PARTITION

    def env(self) -> dict[str, str]:
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        result = subprocess.run(
            cmd, env=self.env(), capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged wants its key private and its socket directory searchable by all.
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "munge", 0o755)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        values = dict(
            node=self.node,
            root=self.root,
            user=_user_name(),
            ctld_port=free_port(),
            slurmd_port=free_port(),
            cpus=self.cpus,
            mem_mb=self.mem_mb,
            gres=gres,
            partition=self.partition,
            min_job_age=MIN_JOB_AGE_S,
        )
        self.conf.write_text(SLURM_CONF.format(**values))
        (self.root / "gres.conf").write_text(GRES_CONF.format(node=self.node) if self.gpus else "")
        (self.root / "cgroup.conf").write_text(CGROUP_CONF)
        self._write_srun_shim()

    def _write_srun_shim(self) -> None:
        # Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6) removes SLURM_* variables,
        # SLURM_CONF included, before it calls `srun`; on a real cluster srun then finds
        # /etc/slurm/slurm.conf, here it would find nothing. This srun, first on the PATH given by
        # `env()`, puts SLURM_CONF back and runs the real one.
        shim = self.root / "bin" / "srun"
        system_path = os.pathsep.join(
            d for d in os.environ.get("PATH", "").split(os.pathsep) if Path(d) != shim.parent
        )
        srun = shutil.which("srun", path=system_path) or "/usr/bin/srun"
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{srun}" "$@"\n')
        os.chmod(shim, 0o755)

    def start(self, timeout: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return once the node is idle."""
        self.write_config()
        munge = self.root / "munge"
        self._daemon(
            "munged",
            "--force",
            f"--key-file={munge / 'munge.key'}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={self.root / 'munged.pid'}",
            f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait_for_file(munge / "munge.socket", timeout)
        # -i: ignore state saved by an earlier cluster in the same directory.
        self._daemon("slurmctld", "-f", str(self.conf), "-i")
        self._wait_for_file(self.root / "slurmctld.pid", timeout)
        self._daemon("slurmd", "-f", str(self.conf), "-N", self.node)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node not idle after {timeout} s ({state!r}); {self.logs()}")

    def stop(self) -> None:
        """Stop the daemons this cluster started (by the pids they wrote), slurmd first."""
        for name in reversed(DAEMONS):
            pid_file = self.root / f"{name}.pid"
            if not pid_file.exists():
                continue
            try:
                pid = int(pid_file.read_text().strip())
            except ValueError:
                continue
            if not _is_process(pid, name):
                continue
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 15):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
            pid_file.unlink(missing_ok=True)

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for name in DAEMONS:
            path = self.root / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}.log ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def _daemon(self, name: str, *args: str) -> None:
        # Each daemon forks into the background and writes its pid file; we keep no handle.
        result = subprocess.run(
            [name, *args], env=self.env(), capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"{name} did not start: {result.stderr.strip()}\n{self.logs()}")

    def _wait_for_file(self, path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear after {timeout} s\n{self.logs()}")
            time.sleep(0.1)


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _is_process(pid: int, name: str) -> bool:
    """True if `pid` is alive and runs `name` (a pid file can outlive its daemon)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == name[:15]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # exited, waiting for its parent to reap it
            return True
        time.sleep(0.1)
    return False


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__)
        return 2
    cluster = SlurmCluster(argv[1])
    if argv[0] == "up":
        reason = ensure_installed()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf} PATH={cluster.root / 'bin'}:$PATH")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
