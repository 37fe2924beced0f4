"""The head's tables: nodes, jobs, the KV store and placement groups. In memory, no I/O.

Every mutation is recorded in `dirty` so that the snapshot writer persists exactly what
changed in one loop tick.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncray._private.head.placement_groups import GroupTable


class SpecNamed:
    """Name, namespace and lifetime of a record created from a user's spec (actor or group)."""

    spec: dict

    @property
    def name(self) -> str:
        return self.spec.get("name") or ""

    @property
    def namespace(self) -> str:
        return self.spec.get("namespace") or ""

    @property
    def detached(self) -> bool:
        return self.spec.get("lifetime") == "detached"


@dataclass
class NodeInfo:
    node_id: bytes
    address: str  # "tcp://...|ipc://..."
    resources: dict
    pid: int
    alive: bool = True


@dataclass
class JobInfo:
    job_id: int
    namespace: str
    driver_address: str
    pid: int
    alive: bool = True


@dataclass
class Tables:
    nodes: dict[bytes, NodeInfo] = field(default_factory=dict)
    jobs: dict[int, JobInfo] = field(default_factory=dict)
    kv: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    next_job_id: int = 1
    dirty: set[tuple[str, object]] = field(default_factory=set)
    groups: GroupTable = field(init=False)

    def __post_init__(self) -> None:
        from asyncray._private.head.placement_groups import GroupTable

        self.groups = GroupTable(self.dirty)  # shares `dirty`: cleared in place, never replaced

    def add_node(self, info: NodeInfo) -> None:
        self.nodes[info.node_id] = info
        self.dirty.add(("node", info.node_id))

    def node_died(self, node_id: bytes) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            node.alive = False
            self.dirty.add(("node", node_id))

    def add_job(self, namespace: str | None, driver_address: str, pid: int) -> JobInfo:
        job_id = self.next_job_id
        self.next_job_id += 1
        # A job without a namespace gets an anonymous one of its own, as in Ray.
        ns = namespace if namespace else f"anonymous-{os.urandom(8).hex()}"
        job = JobInfo(job_id, ns, driver_address, pid)
        self.jobs[job_id] = job
        self.dirty.add(("job", job_id))
        return job

    def finish_job(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.alive = False
            self.dirty.add(("job", job_id))

    def kv_put(self, namespace: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (namespace, key)
        if not overwrite and k in self.kv:
            return False
        self.kv[k] = value
        self.dirty.add(("kv", k))
        return True

    def kv_get(self, namespace: str, key: bytes) -> bytes | None:
        return self.kv.get((namespace, key))

    def node_list(self) -> list[list]:
        return [[n.node_id, n.address, n.resources, n.alive] for n in self.nodes.values()]
