"""Several nodes on one machine, as `ray.cluster_utils.Cluster` gives Ray's own tests:

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    node = cluster.add_node(num_cpus=2, resources={"foo": 1})
    ray.init(address=cluster.address)
    ...
    cluster.remove_node(node)      # its workers, actors and objects go with it
    ray.shutdown(); cluster.shutdown()

Every node is a real node manager process with its own resources, worker pool and object
store, joined to one head over its sockets. Multi-host clusters (a CLI to start nodes on other
machines) come with the cluster issue.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Optional

from asyncray._private import launcher, process
from asyncray._private.config import Config

__all__ = ["Cluster", "ClusterNode"]


class ClusterNode:
    """A node of a Cluster: `node_id` (hex), `address`, the resources it was given."""

    def __init__(self, child: process.Child, info: dict, resources: dict, session: str, session_dir: str,
                 is_head: bool) -> None:
        self._child = child
        self.node_id: str = info["node_id"]
        self.address: str = info["ipc"]
        self.resources = resources
        self.session = session  # names its shared-memory segments
        self.session_dir = session_dir
        self.is_head = is_head

    @property
    def pid(self) -> int:
        return self._child.pid

    def __repr__(self) -> str:
        return f"ClusterNode(node_id={self.node_id[:12]}..., head={self.is_head}, resources={self.resources})"


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: Optional[dict] = None, shutdown_at_exit: bool = True) -> None:
        self.config = Config.from_env()
        self.session = f"{os.getpid():x}_{os.urandom(3).hex()}c"
        self.session_dir = os.path.join(self.config.temp_dir, f"s-{self.session}")
        self.head_node: Optional[ClusterNode] = None
        self.worker_nodes: list[ClusterNode] = []
        self._head: Optional[process.Child] = None
        self._head_info: dict = {}
        self._live_r, self._live_w = process.liveness_pipe()
        self._count = 0
        if shutdown_at_exit:
            import atexit

            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    @property
    def address(self) -> str:
        """The head's address, for `init(address=...)`."""
        if self._head is None:
            raise RuntimeError("The cluster has no head yet: call add_node() first.")
        return self._head_info["tcp"].replace("tcp://", "")

    def connect(self, namespace: Optional[str] = None) -> Any:
        import asyncray

        return asyncray.init(address=self.address, namespace=namespace)

    def add_node(self, wait: bool = True, num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                 resources: Optional[dict] = None, object_store_memory: Optional[int] = None,
                 logging_level: Any = "INFO", **ignored: Any) -> ClusterNode:
        """Start a node manager (the first call also starts the head) and wait until it has
        registered with the head."""
        if self._live_w is None:
            raise RuntimeError("This cluster was shut down.")
        is_head = self._head is None
        total, store = launcher.node_resources(num_cpus, num_gpus, resources, object_store_memory, head=is_head)
        if is_head:
            common = launcher.common_args(self.session, self.session_dir, self._live_r, self.config.to_dict(),
                                          logging_level)
            self._head = launcher.spawn_head(common)
            self._head_info = self._head.wait_ready(self.config.startup_timeout_s)
        self._count += 1
        session = f"{self.session}{self._count}"
        session_dir = os.path.join(self.config.temp_dir, f"s-{session}")
        common = launcher.common_args(session, session_dir, self._live_r, self.config.to_dict(), logging_level)
        child = launcher.spawn_node(common, total, store, self._head_info["ipc"])
        try:
            info = child.wait_ready(self.config.startup_timeout_s)
        except BaseException:
            child.stop(self.config.stop_grace_s)
            raise
        node = ClusterNode(child, info, total, session, session_dir, is_head)
        if is_head:
            self.head_node = node
        else:
            self.worker_nodes.append(node)
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node: its workers and actors die and its objects are lost, as when a
        machine goes away (allow_graceful=False: SIGKILL, no clean-up by the node itself)."""
        if node in self.worker_nodes:
            self.worker_nodes.remove(node)
        elif node is self.head_node:
            self.head_node = None
        else:
            raise ValueError(f"{node!r} is not a node of this cluster.")
        if allow_graceful:
            node._child.stop(self.config.stop_grace_s)
        else:
            node._child.popen.kill()
            node._child.popen.wait()
            from asyncray._private.object_store import segments

            segments.unlink_session(node.session)
        shutil.rmtree(node.session_dir, ignore_errors=True)

    def list_all_nodes(self) -> list[ClusterNode]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the head lists every node of this cluster as alive (needs a connected driver)."""
        import asyncray

        want = {n.node_id for n in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        while True:
            alive = {n["NodeID"] for n in asyncray.nodes() if n["Alive"]}
            if want <= alive:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(want - alive)} did not register within {timeout} s")
            time.sleep(0.05)

    def shutdown(self) -> None:
        for node in list(self.worker_nodes) + ([self.head_node] if self.head_node else []):
            self.remove_node(node)
        if self._head is not None:
            self._head.stop(self.config.stop_grace_s)
            self._head = None
        if self._live_w is not None:
            os.close(self._live_w)
            os.close(self._live_r)
            self._live_w = None
        shutil.rmtree(self.session_dir, ignore_errors=True)
