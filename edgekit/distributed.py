"""The optional Ray backend (``--ray auto|ADDRESS``): eval shards and --max-drop search trials as Ray tasks.

``connect`` joins (or starts) a cluster once per process; ``RayBackend.map`` runs a module-level
function on many argument tuples as Ray tasks of one CPU each and returns the results in order, so
the callers (``edgekit.measure.evaluate``, ``edgekit.export.search``) combine them exactly as
their local loops do.
Artefacts and run folders are passed as paths: a remote cluster must see them at the same path.
Ray is imported only here and only when --ray is given (``pip install 'edgekit[ray]'``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgekit.errors import UsageError

INSTALL = "pip install 'edgekit[ray]'"
CONNECT_TIMEOUT_S = 5.0
_threads: int | None = None  # intra-op threads of the Ray task running in this process (None: not a task)
_backend: RayBackend | None = None


@dataclass(frozen=True)
class RayBackend:
    address: str  # what was asked: "auto" or an address
    workers: int  # the cluster's CPUs: tasks (of one CPU each) that run at once
    version: str

    def to_dict(self) -> dict:
        return {"backend": "ray", "address": self.address, "ray_version": self.version,
                "workers": self.workers,
                "threads_per_task": "the node's cores / its Ray CPUs (torch; sessions that take threads)"}

    def put(self, value):
        """The value in Ray's object store, to pass to many tasks without copying it each time."""
        import ray

        return ray.put(value)

    def map(self, fn: Callable, calls: Sequence[tuple]) -> list:
        """``fn(*args)`` for each ``args`` in ``calls``, as Ray tasks; the results in the order of ``calls``.
        ``fn`` must be a module-level function of edgekit (workers import it by name)."""
        import ray

        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        return ray.get([task.remote(fn, *args) for args in calls])


def connect(address: str) -> RayBackend:
    """Join the cluster at ``address``, or for "auto" the one in RAY_ADDRESS or running on this machine,
    else start a local one (``ray.init()``; Ray's own address="auto" fails when none runs). Once per
    process: later calls return the same backend. Raises UsageError when Ray is missing or the address
    cannot be reached."""
    global _backend
    if _backend is not None:
        return _backend
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed; install it with {INSTALL}") from None
    if not ray.is_initialized():
        if address != "auto":
            _check_reachable(address)
        import logging

        try:
            ray.init(address=_auto() if address == "auto" else address, logging_level=logging.ERROR,
                     include_dashboard=False, log_to_driver=False)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}"
                             + _auth_hint(exc)) from None
    workers = int(ray.cluster_resources().get("CPU", 1))
    _backend = RayBackend(address, max(workers, 1), ray.__version__)
    return _backend


def _auto() -> str | None:
    """What ray.init gets for "auto": None (Ray joins the cluster in RAY_ADDRESS or the one it last
    started here, turning token auth on as it should) when that cluster listens; "local" (a new
    local cluster) when none does, also when Ray's record of the last one is stale, which
    ray.init would retry for minutes."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    try:
        from ray._private.services import canonicalize_bootstrap_address  # Ray's own lookup

        found = canonicalize_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - no usable record: start a local cluster
        found = None
    if found is None:
        return "local"
    host, _, port = found.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError):
        return "local"
    return None


def active() -> RayBackend | None:
    """The backend this process connected to (``connect``), or None; never imports Ray."""
    return _backend


def task_threads() -> int | None:
    """Intra-op threads for sessions opened in this process: a share of the node's cores inside a
    Ray task, None (the runtime's default) otherwise."""
    return _threads


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at ``address``."""
    bare = address.split("://", 1)[-1]
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray takes auto or HOST:PORT (or ray://HOST:PORT), not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start one "
                         "with `ray start --head` or pass --ray auto") from None


def _call(fn: Callable, *args):
    """Runs in a Ray worker: set the intra-op threads to this task's share of the node, then ``fn``."""
    global _threads
    if _threads is None:
        _threads = _node_threads()
        import torch

        torch.set_num_threads(_threads)
        os.environ["OMP_NUM_THREADS"] = str(_threads)
    return fn(*args)


def _node_threads() -> int:
    """Cores of this node divided by the Ray CPUs it offers (tasks take one CPU each)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("NodeID") == node), 1)
    return max(1, (os.cpu_count() or 1) // max(1, int(cpus)))


def _auth_hint(exc: BaseException) -> str:
    """Ray sends its token to an explicit address only when asked (RAY_AUTH_MODE=token), while
    `ray start --head` turns token authentication on: say so when that is why we were refused."""
    text = f"{exc} {exc.__cause__ or ''}".lower()
    if "auth" in text and os.environ.get("RAY_AUTH_MODE") is None:
        return ("; the cluster wants a token: set RAY_AUTH_MODE=token (the token from ~/.ray/auth_token "
                "or RAY_AUTH_TOKEN)")
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
