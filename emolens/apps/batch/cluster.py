"""Ray, as a batch uses it: embedded on a loopback address by default, or an existing cluster.

Each work item is a Ray task (retried by Ray when its worker process or node dies). A worker
process builds one :class:`~emolens.inference.recognizer.Recognizer` (its ONNX Runtime sessions)
for the batch's options and keeps it for every task it runs, with its threads pinned to the cores
Ray granted the task.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from typing import Any

from emolens.apps.batch.analysis import BatchOptions, ItemResult, WorkItem, analyze_item, pin_threads
from emolens.errors import ConfigError
from emolens.inference.recognizer import Recognizer

#: The embedded Ray's node address: a loopback address (Ray rewrites 127.0.0.1 to the machine's
#: network address, so another one of 127/8).
LOOPBACK_NODE_IP = "127.0.0.2"
#: The embedded object store: results are small (timeline rows), so a little shared memory does.
OBJECT_STORE_BYTES = 256 * 1024**2
#: Attempts of a task whose worker or node died (a file that kills its worker every time fails after these).
TASK_RETRIES = 4

_recognizers: dict[tuple[BatchOptions, int], Recognizer] = {}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def connect(address: str | None, cpus: int) -> dict[str, float]:
    """Start Ray embedded (``address`` None: ``cpus`` CPUs, on :data:`LOOPBACK_NODE_IP`, no
    dashboard, Ray's token authentication on) or join the cluster at ``address`` (host:port of
    its head); returns the cluster's resources."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to Ray's servers
    quiet: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        if address is None:
            ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address=LOOPBACK_NODE_IP,
                     object_store_memory=OBJECT_STORE_BYTES, **quiet)
        else:
            host = address.rpartition(":")[0] or address
            # A driver on a loopback-only cluster must say which loopback address is its node's.
            local = {"_node_ip_address": host} if _is_loopback(host) else {}
            ray.init(address=address, **local, **quiet)
    except (OSError, ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {address}: cannot join the Ray cluster" if address else "Ray cannot start on this machine"
        raise ConfigError(f"{where} ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
    return ray.cluster_resources()


def disconnect() -> None:
    """Leave the cluster (an embedded Ray stops with it)."""
    import ray

    ray.shutdown()


def _analyze(item: WorkItem, options: BatchOptions, threads: int) -> ItemResult:
    """The task: this worker process's recognizer (built on its first task) on one work item."""
    import ray

    key = (options, threads)
    if key not in _recognizers:
        pin_threads(threads)
        _recognizers[key] = options.recognizer()
    result = analyze_item(_recognizers[key], item, options)
    result.node = ray.util.get_node_ip_address()  # the node's address (hosts may share a name)
    return result


@functools.cache
def _task(threads: int) -> Any:
    import ray

    return ray.remote(_analyze).options(num_cpus=threads, max_retries=TASK_RETRIES, retry_exceptions=False)


def submit(item: WorkItem, options: BatchOptions, threads: int) -> Any:
    """Start one work item on the cluster; returns its ``ObjectRef``."""
    return _task(threads).remote(item, options, threads)
