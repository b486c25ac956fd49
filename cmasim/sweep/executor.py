"""Executors: where the runs of a sweep execute. Both yield result rows as runs finish.

- `LocalExecutor`: every run in this process, one after another (`--workers 0` / `--local`):
  for debugging, and the reference for the identical-results check.
- `RayExecutor`: one Ray task per run. Without an address it starts a local Ray instance with
  `workers` CPUs (default: this machine's cores); with `--address` it joins an existing cluster.
  Ray reuses its worker processes, so each worker compiles (or loads from numba's cache) the
  core once, on its first run, and keeps it. At most `2 × CPUs` tasks are in flight, so the
  driver holds a bounded number of pending results whatever the size of the sweep.

Local workers get this process's `PYTHONPATH` (plus the directory `cmasim` was imported from)
and `CMASIM_JIT` / `NUMBA_CACHE_DIR`, so they run the same code in the same mode. A cluster
whose nodes are not this machine gets the `cmasim` package shipped with the job (Ray's
`py_modules`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cmasim.sweep.runner import RunContext, execute, failed_row
from cmasim.sweep.spec import RunTask, SweepError

_PKG_PARENT = Path(__file__).resolve().parent.parent.parent
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_PASS_ENV = ("CMASIM_JIT", "NUMBA_DISABLE_JIT", "NUMBA_CACHE_DIR")


class LocalExecutor:
    """Runs every task in this process, in order."""

    name = "local"
    workers = 1

    def run(self, ctx: RunContext, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        for t in tasks:
            yield execute(ctx, t)

    def close(self) -> None:
        pass


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_address(address: str, timeout: float = 3.0) -> None:
    """SweepError unless `address` (ray://HOST:PORT or HOST:PORT) accepts a TCP connection."""
    hp = _host_port(address)
    if hp is None:
        raise SweepError(f"--address {address}: expected ray://HOST:PORT, HOST:PORT or auto")
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise SweepError(f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    paths = [str(_PKG_PARENT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class RayExecutor:
    """Runs each task as a Ray task on a local instance or an existing cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        import ray

        self.ray = ray
        runtime_env: dict[str, Any] = {"env_vars": _worker_env()}
        if address and address != "auto":
            check_address(address)
            hp = _host_port(address)
            if hp and hp[0] not in _LOOPBACK:
                import cmasim

                runtime_env = {"py_modules": [cmasim], "env_vars": {k: v for k, v in _worker_env().items()
                                                                    if k != "PYTHONPATH"}}
        kw: dict[str, Any] = dict(runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR",
                                  configure_logging=True)
        if address:
            kw["address"] = address
        else:
            kw.update(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
        try:
            ray.init(**kw)
        except Exception as e:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ...
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            msg = " ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
            where = f"--address {address}" if address else "local Ray instance"
            raise SweepError(f"{where}: cannot start or join Ray: {msg}") from None
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(execute)

    def run(self, ctx: RunContext, tasks: list[RunTask]) -> Iterator[dict[str, Any]]:
        ray = self.ray
        ctx_ref = ray.put(ctx)
        window = 2 * self.workers
        pending: dict[Any, RunTask] = {}
        it = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                t = next(it, None)
                if t is None:
                    exhausted = True
                    break
                pending[self._remote.remote(ctx_ref, t)] = t
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                t = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died: stored as failed, the sweep goes on
                    yield failed_row(ctx, t, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}")

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(address: str | None, workers: int | None, local: bool):
    """`--local` or `--workers 0`: in-process; else Ray (local instance, or the cluster at `address`)."""
    if workers is not None and workers < 0:
        raise SweepError(f"--workers: must be 0 or more, got {workers}")
    if local or workers == 0:
        if address:
            raise SweepError("--address: cannot be combined with --local / --workers 0")
        return LocalExecutor()
    if address and workers is not None:
        raise SweepError("--workers: sets the size of a local Ray instance; with --address the cluster's CPUs are used")
    return RayExecutor(address, workers)
