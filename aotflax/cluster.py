"""A `jax.distributed` cluster of local processes on the loopback address.

XLA:CPU compiles a program over several processes only inside a distributed
run: each process owns its share of the devices and the collectives go through
gloo (measured with jax 0.10.2: such an executable serializes, and a fresh pair
of processes deserializes and runs it). A CPU build host that compiles a target
with `processes=2` therefore starts such a run of its own: `processes` copies of
a command on this machine, each forced to its share of CPU devices, with a
coordinator on 127.0.0.1 at a free port. The tests start their runs the same way.

Every process is bounded in time: `jax.distributed.initialize` gives up when a
peer does not come, and `run` kills every process of the run when one fails or
the time is up. Only `initialize`, which runs inside a process of the run,
imports jax.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

__all__ = ["COORDINATOR", "PROCESS_ID", "PROCESSES", "ClusterError", "Finished", "free_port",
           "initialize", "run"]

#: Environment variables `run` gives each process: the coordinator's address,
#: the process's index and the process count (read back by `initialize`).
COORDINATOR = "AOTFLAX_COORDINATOR"
PROCESS_ID = "AOTFLAX_PROCESS_ID"
PROCESSES = "AOTFLAX_PROCESSES"


class ClusterError(RuntimeError):
    """A local run failed: a process exited with an error or the run ran out of time."""


@dataclass(frozen=True)
class Finished:
    """One process of a run that exited: its index, exit status and output."""

    rank: int
    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    argv: Sequence[str],
    processes: int,
    *,
    devices_per_process: int,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> list[Finished]:
    """Runs `argv` as `processes` processes of one local `jax.distributed` cluster.

    **Arguments:** `argv`: the command (it calls `initialize()` first);
    `devices_per_process`: CPU devices forced in each process; `timeout`: seconds
    for the whole run; `env`: the environment (default: this process's).

    **Returns:** every process's result, in rank order, when all exited with 0.

    **Raises:** `ClusterError` naming the first process that failed (with the end
    of its stderr) or the timeout; every process of the run is stopped first.
    """
    base = dict(os.environ if env is None else env)
    base["XLA_FLAGS"] = _forced_devices(base.get("XLA_FLAGS", ""), devices_per_process)
    base["JAX_PLATFORMS"] = "cpu"
    coordinator = f"127.0.0.1:{free_port()}"
    children: list[_Child] = []
    with tempfile.TemporaryDirectory(prefix="aotflax-cluster-") as logs:
        try:
            for rank in range(processes):
                child_env = {**base, COORDINATOR: coordinator, PROCESS_ID: str(rank),
                             PROCESSES: str(processes)}
                # files, not pipes: a chatty process never blocks on a full pipe
                out = open(os.path.join(logs, f"{rank}.out"), "w+", encoding="utf-8")
                err = open(os.path.join(logs, f"{rank}.err"), "w+", encoding="utf-8")
                children.append(_Child(subprocess.Popen(
                    list(argv), env=child_env, stdout=out, stderr=err, text=True,
                    start_new_session=True), out, err))
            return _wait(children, time.monotonic() + timeout, timeout)
        finally:
            for child in children:
                _stop(child.process)
                child.out.close()
                child.err.close()


@dataclass(frozen=True)
class _Child:
    """A started process and the files its output goes to."""

    process: subprocess.Popen
    out: IO[str]
    err: IO[str]

    def output(self) -> tuple[str, str]:
        texts = []
        for f in (self.out, self.err):
            f.seek(0)
            texts.append(f.read())
        return texts[0], texts[1]


def _wait(children: list[_Child], deadline: float, timeout: float) -> list[Finished]:
    """Waits for every process; the first failure or the deadline stops the run."""
    results: dict[int, Finished] = {}
    while len(results) < len(children):
        for rank, child in enumerate(children):
            if rank in results or child.process.poll() is None:
                continue
            out, err = child.output()
            results[rank] = Finished(rank, child.process.returncode, out, err)
            if child.process.returncode != 0:
                raise ClusterError(f"process {rank} of {len(children)} exited with status "
                                   f"{child.process.returncode}: {_tail(err)}")
        if len(results) < len(children):
            if time.monotonic() > deadline:
                raise ClusterError(f"the run of {len(children)} processes did not finish in "
                                   f"{timeout:.0f} s")
            time.sleep(0.05)
    return [results[rank] for rank in range(len(children))]


def _stop(child: subprocess.Popen) -> None:
    """Kills a process of the run (and what it started) unless it has exited."""
    if child.poll() is None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            child.kill()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) or "(no output)"


def _forced_devices(flags: str, count: int) -> str:
    """XLA_FLAGS with the host platform's device count set to `count`."""
    kept = [f for f in flags.split() if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join([*kept, f"--xla_force_host_platform_device_count={count}"])


def initialize(timeout: int = 120) -> tuple[int, int]:
    """In a process `run` started: `jax.distributed.initialize` with gloo collectives.

    **Returns:** `(process index, process count)`.
    """
    import jax  # only a process of the run needs jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    rank, count = int(os.environ[PROCESS_ID]), int(os.environ[PROCESSES])
    jax.distributed.initialize(os.environ[COORDINATOR], num_processes=count, process_id=rank,
                               initialization_timeout=timeout, heartbeat_timeout_seconds=timeout,
                               shutdown_timeout_seconds=timeout)
    return rank, count
