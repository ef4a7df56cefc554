"""A single-node SLURM for the tests: munged, slurmctld and slurmd of the Debian packages
(`slurm-wlm`, `munge`), configured and run entirely under a temporary directory.

:func:`start` writes a minimal ``slurm.conf`` for this machine (the node is ``hostname -s``,
CPUs from ``nproc``, RealMemory from ``/proc/meminfo`` minus a margin, one counted ``gpu``
GRES so GPU requests can be scheduled, partitions ``cpu`` (default) and ``gpu``,
``select/cons_tres``, ``proctrack/linuxproc``, **no accounting storage**), its own munge key and
socket, starts the three daemons on free ports and waits for the node to be idle.  Clients find
it through ``SLURM_CONF`` (set in the returned environment).  :meth:`Cluster.stop` shuts
everything down.  Run ``python -m tests.workflow.slurm_cluster`` to start one by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
#: Memory left to the OS and the test process itself (MB).
MEM_MARGIN_MB = 2048


class SlurmUnavailable(RuntimeError):
    """SLURM could not be started here (missing packages, a daemon failed)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def missing_tools() -> list[str]:
    """Daemons and clients of the Debian packages that are not installed."""
    return [n for n in (*DAEMONS, *CLIENTS) if _sbin(n) is None]


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, node: str, cpus: int, mem_mb: int, ports: tuple[int, int]) -> str:
    """The text of a minimal single-node ``slurm.conf`` with every path under ``root``."""
    return f"""\
ClusterName=denoisetest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
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
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobContainerType=job_container/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=2
InactiveLimit=0
SlurmdTimeout=300
MessageTimeout=30
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} Default=NO MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    """A running single-node SLURM (see :func:`start`)."""

    root: Path
    conf: Path
    node: str
    cpus: int
    mem_mb: int
    procs: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` plus ``SLURM_CONF`` pointing at this cluster and the ``srun`` shim
        first on ``PATH`` (see :func:`_srun_shim`)."""
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)}: {proc.stdout}{proc.stderr}")
        return proc

    def log(self, name: str = "slurmctld") -> str:
        p = self.root / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def node_state(self) -> str:
        proc = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return ",".join(sorted(set(proc.stdout.split())))  # one line per partition

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge=300 s): id, state, partition, cpus, mem, comment, ..."""
        fmt = "%i|%j|%T|%P|%C|%m|%l|%b|%k"
        keys = ("id", "name", "state", "partition", "cpus", "mem", "timelimit", "gres", "comment")
        out = self.run("squeue", "-h", "--states=all", "-o", fmt).stdout
        return [dict(zip(keys, ln.split("|"), strict=True)) for ln in out.splitlines() if ln.strip()]

    def submitted_job_ids(self) -> list[int]:
        """Ids of every job slurmctld accepted from ``sbatch`` (its ``_slurm_rpc_submit_batch_job``)."""
        ids = []
        for line in self.log().splitlines():
            if "_slurm_rpc_submit_batch_job:" in line and "JobId=" in line:
                ids.append(int(line.split("JobId=")[1].split()[0]))
        return ids

    def stop(self) -> None:
        """``scontrol shutdown``, then SIGTERM (SIGKILL after 10 s) to every daemon started."""
        if "slurmctld" in self.procs:
            self.run("scontrol", "shutdown", check=False, timeout=20)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.procs.pop(name, None)
            if pid is None:
                continue
            _terminate(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child counts as gone.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_pid(path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.2)
    raise SlurmUnavailable(f"{path} did not appear")


def _munge_key(path: Path) -> None:
    """A fresh 1024-byte munge key, mode 0400 (munged refuses readable-by-others keys)."""
    path.write_bytes(os.urandom(1024))
    path.chmod(0o400)


def _srun_shim(root: Path, conf: Path) -> None:
    """``<root>/bin/srun``: the real srun with ``SLURM_CONF`` set.

    The SLURM executor's job step (snakemake-executor-plugin-slurm-jobstep 0.6.1) strips every
    ``SLURM_*`` variable but the job's identity from the environment of the ``srun`` it runs
    inside the job, ``SLURM_CONF`` included; a real site's clients find their config at the
    default path (``/etc/slurm/slurm.conf``) or configless, this throw-away cluster's would not.
    """
    real = _sbin("srun")
    shim = root / "bin" / "srun"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {real} "$@"\n')
    shim.chmod(0o755)


def start(root: Path, timeout: float = 60.0) -> Cluster:
    """Configure and start munged, slurmctld and slurmd under ``root``; wait for an idle node.

    Raises :class:`SlurmUnavailable` (with the daemons' logs) when anything fails; whatever was
    started is stopped first.
    """
    missing = missing_tools()
    if missing:
        raise SlurmUnavailable(f"not installed: {', '.join(missing)} (Debian: slurm-wlm munge)")
    root = Path(root).resolve()
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o755)
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = max(1024, _mem_total_mb() - MEM_MARGIN_MB)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, node, cpus, mem_mb, (_free_port(), _free_port())))
    # A count-only GPU (no device file): lets `--gpus=1` jobs be scheduled on a CPU node.
    (root / "gres.conf").write_text(f"AutoDetect=off\nNodeName={node} Name=gpu File=/dev/null\n")
    _srun_shim(root, conf)
    cluster = Cluster(root, conf, node, cpus, mem_mb)
    env = cluster.env
    try:
        key = root / "munge" / "munge.key"
        if not key.exists():
            _munge_key(key)
        subprocess.run(
            [_sbin("munged"), "--force", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
             f"--seed-file={root}/munge/munged.seed"],
            check=True, capture_output=True, text=True, timeout=30,
        )
        cluster.procs["munged"] = _read_pid(root / "munge" / "munged.pid", 10)
        for daemon in ("slurmctld", "slurmd"):
            # Both fork into the background and write their pid files.
            subprocess.run([_sbin(daemon), "-f", str(conf)], check=True, env=env,
                           capture_output=True, text=True, timeout=30)
            cluster.procs[daemon] = _read_pid(root / f"{daemon}.pid", 20)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = cluster.node_state()
            if state == "idle":
                return cluster
            if state.rstrip("*") in ("down", "drain", "drained"):
                cluster.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
            time.sleep(0.5)
        raise SlurmUnavailable(f"node state {state!r} after {timeout:.0f} s")
    except (subprocess.SubprocessError, OSError, SlurmUnavailable) as exc:
        logs = "\n".join(
            f"--- {n}.log\n{cluster.log(n)[-2000:]}" for n in ("slurmctld", "slurmd")
        )
        cluster.stop()
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else ""
        raise SlurmUnavailable(f"SLURM did not start: {exc} {detail}\n{logs}") from exc


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    import tempfile

    where = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="slurm-"))
    c = start(where)
    print(f"export SLURM_CONF={c.conf}   # pids {c.procs}; Ctrl-C stops it")
    try:
        signal.pause()
    except KeyboardInterrupt:
        c.stop()
