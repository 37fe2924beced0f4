"""Worker leases held by one owner, per resource shape, and the tasks pushed through them.

An owner asks its node manager for a lease for a shape, then pushes tasks of that shape straight
to the leased worker, several in flight when tasks are short (pipelining), one at a time when
they are long (so long tasks spread over every worker the node grants). A lease is returned
when the shape's queue has been empty for `lease_linger_s`, so a script calling
`get(f.remote())` in a loop keeps its worker instead of paying a lease round trip per task.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any


class Lease:
    __slots__ = ("lease_id", "worker_id", "address", "in_flight", "fns_sent", "linger", "dead", "blocked", "gpu_ids",
                 "node")

    def __init__(self, lease_id: int, worker_id: bytes, address: str, gpu_ids: list | None = None,
                 node: str = "") -> None:
        self.gpu_ids = gpu_ids or []
        self.node = node  # address of the node manager that granted it
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.address = address
        self.in_flight: dict[bytes, Any] = {}  # task id -> spec
        self.fns_sent: set[bytes] = set()
        self.linger: Any = None  # TimerHandle of a pending return
        self.dead = False
        # Its running task blocked in get and gave back the queue: push nothing more to it
        # until that task replies.
        self.blocked = False


class ShapeQueue:
    """Tasks of one function and shape (resources, runtime_env) waiting for, or running on,
    leased workers; keyed by function as Ray's scheduling classes are, so a slow function's
    calls never queue behind another function's."""

    __slots__ = ("key", "shape", "runtime_env", "pending", "leases", "requests", "avg_s", "single", "strategy")

    def __init__(self, key: tuple, shape: dict[str, float], runtime_env: Any, single: bool,
                 strategy: Any = None) -> None:
        self.key = key
        self.strategy = strategy
        self.shape = shape
        self.runtime_env = runtime_env
        self.pending: deque = deque()
        self.leases: dict[int, Lease] = {}
        self.requests: dict[int, str] = {}  # lease request ids not yet granted -> node asked
        # Moving average of a task's round trip; decides pipelining. Unknown until the first
        # reply, and until then tasks go one per worker, so long tasks spread out.
        self.avg_s: float | None = None
        # max_calls tasks: one call per push, the worker may exit after it.
        self.single = single

    def depth(self, pipeline_depth: int) -> int:
        if self.single or self.avg_s is None or self.avg_s > 0.002:
            return 1
        return pipeline_depth

    def room(self, lease: Lease, pipeline_depth: int, now: float) -> int:
        """How many more tasks to push to `lease` now.

        A task that runs far longer than this function's average (a slow call among fast
        ones) stalls the lease: nothing more is queued behind it, and the backlog asks for
        another worker instead.
        """
        if lease.dead or (lease.blocked and lease.in_flight):
            return 0
        depth = self.depth(pipeline_depth)
        n = len(lease.in_flight)
        if n and depth > 1:
            oldest = next(iter(lease.in_flight.values()))
            if now - oldest.pushed_at > max(0.005, 5 * (self.avg_s or 0.0)):
                return 0
        return max(depth - n, 0)

    def record_duration(self, seconds: float) -> None:
        self.avg_s = seconds if self.avg_s is None else 0.8 * self.avg_s + 0.2 * seconds

    def wanted_requests(self, pipeline_depth: int, max_leases: int) -> int:
        """How many more leases to ask for, given the backlog."""
        if not self.pending:
            return 0
        now = time.perf_counter()
        room = sum(self.room(ls, pipeline_depth, now) for ls in self.leases.values())
        backlog = len(self.pending) - room
        if backlog <= 0:
            return 0
        have = len(self.leases) + len(self.requests)
        return max(0, min(backlog, max_leases - have))
