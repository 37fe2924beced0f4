"""Which lease request gets resources next: plain logic, events in, decisions out.

Requests wait in one FIFO per shape; a dispatch pass walks the shapes (few) and grants the
oldest request of each shape while it fits, so a large request does not block small ones of
another shape behind it, and no pass scans every queued request. Infeasible requests (more
than the node has) are reported once so the caller can warn.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from asyncray._private.node.resources import ResourcePool, to_units


@dataclass
class LeaseRequest:
    req_id: int
    owner: bytes  # identity of the requesting process on the node's ROUTER
    shape: dict[str, float]
    units: dict[str, int]
    job_id: int
    runtime_env: Any
    strategy: Any = None  # as the request carried it, for decisions made again later
    key: tuple = field(default=())
    start_failures: int = 0  # workers forked for it that died before registering


class LeaseScheduler:
    def __init__(self, pool: ResourcePool) -> None:
        self.pool = pool
        self._queues: OrderedDict[tuple, deque[LeaseRequest]] = OrderedDict()
        self._by_id: dict[tuple[bytes, int], LeaseRequest] = {}
        self.infeasible_warned: set[tuple] = set()

    @staticmethod
    def shape_key(shape: dict[str, float]) -> tuple:
        return tuple(sorted(shape.items()))

    def submit(self, req: LeaseRequest) -> None:
        req.units = to_units(req.shape)
        req.key = self.shape_key(req.shape)
        self._queues.setdefault(req.key, deque()).append(req)
        self._by_id[(req.owner, req.req_id)] = req

    def cancel(self, owner: bytes, req_id: int) -> LeaseRequest | None:
        req = self._by_id.pop((owner, req_id), None)
        if req is not None:
            q = self._queues.get(req.key)
            if q is not None:
                try:
                    q.remove(req)
                except ValueError:
                    pass
                if not q:
                    del self._queues[req.key]
        return req

    def cancel_where(self, match) -> list[LeaseRequest]:
        """Cancel the queued requests whose shape matches (checked once per shape, not per request)."""
        gone = []
        for key in [k for k, q in self._queues.items() if q and match(q[0])]:
            for r in list(self._queues[key]):
                self.cancel(r.owner, r.req_id)
                gone.append(r)
        return gone

    def cancel_owner(self, owner: bytes) -> list[LeaseRequest]:
        gone = [r for (o, _), r in list(self._by_id.items()) if o == owner]
        for r in gone:
            self.cancel(owner, r.req_id)
        return gone

    def pending(self) -> int:
        return len(self._by_id)

    def dispatch(self) -> Iterator[LeaseRequest]:
        """Yield requests that now fit; their resources are acquired as they are yielded."""
        for key in list(self._queues):
            q = self._queues[key]
            while q:
                req = q[0]
                if not self.pool.fits(req.units):
                    break
                q.popleft()
                del self._by_id[(req.owner, req.req_id)]
                self.pool.acquire(req.units)
                yield req
            if not q:
                del self._queues[key]

    def newly_infeasible(self) -> list[LeaseRequest]:
        out = []
        for key, q in self._queues.items():
            if q and key not in self.infeasible_warned and not self.pool.feasible(q[0].units):
                self.infeasible_warned.add(key)
                out.append(q[0])
        return out
