"""Starting the cluster's processes: a head, and node managers joined to it.

Used by init() (a head and one node, for a local cluster) and by cluster_utils.Cluster (a head
and several nodes on this machine, as Ray's tests run them). Each node has a session of its
own: its sockets, logs and spill files under its own directory, its shared-memory segments
under its own name prefix, so removing a node removes exactly what was its own.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from asyncray._private import process
from asyncray._private.ids import random_id
from asyncray._private.object_store import segments


def node_resources(num_cpus: float | None, num_gpus: float | None, resources: dict | None,
                   object_store_memory: int | None, head: bool) -> tuple[dict[str, float], int]:
    """A node's resources as Ray names them, and its store size in bytes."""
    cpus = float(num_cpus if num_cpus is not None else os.cpu_count() or 1)
    total = {"CPU": cpus}
    if num_gpus:
        total["GPU"] = float(num_gpus)
    total.update({k: float(v) for k, v in (resources or {}).items()})
    total["memory"] = float(total_memory() * 0.7 // 1)
    total["node:127.0.0.1"] = 1.0  # Ray's per-node resource, for affinity by resources
    if head:
        total["node:__internal_head__"] = 1.0
    store = int(object_store_memory or default_store_size())
    shm_free = shm_capacity()
    if object_store_memory and store > shm_free:
        raise ValueError(
            f"object_store_memory={store:,} bytes does not fit in {segments.SHM_DIR}, which has {shm_free:,} bytes "
            f"free (a default Docker container has 64 MiB). Pass a smaller object_store_memory (objects beyond "
            f"it are spilled to disk), or give the container more shared memory (docker run --shm-size=2g).")
    total["object_store_memory"] = float(store)
    return total, store


def common_args(session: str, session_dir: str, liveness_fd: int, config: dict, logging_level: Any) -> dict:
    os.makedirs(os.path.join(session_dir, "logs"), exist_ok=True)
    level = logging.getLevelName(logging_level) if isinstance(logging_level, int) else str(logging_level).upper()
    return {"session": session, "session_dir": session_dir, "liveness_fd": liveness_fd, "config": config,
            "logging_level": level}


def spawn_head(common: dict, port: int = 0) -> process.Child:
    return process.spawn("head", "asyncray._private.head.server", dict(common, port=port),
                         log_path=os.path.join(common["session_dir"], "logs", "head.log"),
                         pass_fds=(common["liveness_fd"],))


def spawn_node(common: dict, total: dict, store: int, head_address: str) -> process.Child:
    return process.spawn("node manager", "asyncray._private.node.main",
                         dict(common, node_id=random_id().hex(), resources=total, object_store_memory=store,
                              head_address=head_address),
                         log_path=os.path.join(common["session_dir"], "logs", "node.log"),
                         pass_fds=(common["liveness_fd"],))


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


def shm_capacity() -> int:
    try:
        st = os.statvfs(segments.SHM_DIR)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


def default_store_size() -> int:
    """Ray's default: 30 % of RAM, capped by what /dev/shm can hold."""
    return int(min(total_memory() * 0.3, shm_capacity() * 0.95 or total_memory() * 0.3))
