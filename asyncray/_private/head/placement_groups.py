"""The head's placement group table: PENDING -> CREATED -> REMOVED (or PENDING -> REMOVED; a
CREATED group whose node died is RESCHEDULING until its lost bundles are placed again),
names per namespace, who waits for a group to be ready, and the groups still to place, in
the order they were asked for. Plain state; the server does the I/O.

Placing is two steps, as in Ray's GCS: choose a node per bundle from the head's view of free
resources (scheduling/bundles.py), then have each node reserve its bundles. If any node
refuses (its free resources changed since the head last heard), the others give theirs back
and the group waits for the next change of resources.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from asyncray._private.head.tables import SpecNamed

PENDING, CREATED, REMOVED, RESCHEDULING = "PENDING", "CREATED", "REMOVED", "RESCHEDULING"
KEEP_REMOVED = 1000  # removed groups stay listed (as in Ray) up to this many


@dataclass
class GroupRecord(SpecNamed):
    pg_id: bytes
    spec: dict
    state: str = PENDING
    nodes: list = field(default_factory=list)  # node id per bundle once placed (None: lost, to place again)
    placing: list = field(default_factory=list)  # bundle indices the attempt in flight reserves
    reserving: dict = field(default_factory=dict)  # reservation request id -> node id, in flight
    refused: bool = False  # a node refused during this attempt
    waiters: list = field(default_factory=list)  # (identity, req_id) of WaitPlacementGroup
    created_at: float = field(default_factory=time.time)
    attempts: int = 0
    latency_ms: float = 0.0
    warned: bool = False  # said once that no node set can ever hold it
    actor_gone: bool = True  # fate-sharing (GroupTable.creator_actor_gone / job_gone)
    job_gone: bool = False

    def table(self) -> dict:
        """Ray's placement_group_table() entry."""
        return {
            "placement_group_id": self.pg_id.hex(), "name": self.name,
            "bundles": {i: dict(b) for i, b in enumerate(self.spec["bundles"])},
            "bundles_to_node_id": {i: n.hex() for i, n in enumerate(self.nodes) if n is not None},
            "strategy": self.spec["strategy"], "state": self.state,
            "stats": {"end_to_end_creation_latency_ms": self.latency_ms, "scheduling_attempt": self.attempts,
                      "scheduling_state": {PENDING: "QUEUED", CREATED: "FINISHED", REMOVED: "REMOVED",
                                                       RESCHEDULING: "QUEUED"}[self.state]},
        }


class GroupTable:
    def __init__(self, dirty: Optional[set] = None) -> None:
        # Shared with Tables: what the snapshot writes at the end of the loop tick.
        self.dirty: set = dirty if dirty is not None else set()
        self.groups: dict[bytes, GroupRecord] = {}
        self.names: dict[tuple[str, str], bytes] = {}
        self.pending: OrderedDict[bytes, None] = OrderedDict()
        self._by_actor: dict[bytes, set[bytes]] = {}  # creating actor -> its non-detached groups
        self._removed: OrderedDict[bytes, None] = OrderedDict()

    def named(self, namespace: str, name: str) -> Optional[GroupRecord]:
        pg_id = self.names.get((namespace, name))
        return self.groups.get(pg_id) if pg_id is not None else None

    def add(self, rec: GroupRecord) -> None:
        """A new group, or one restored from the snapshot (in the state it had)."""
        self.groups[rec.pg_id] = rec
        self.dirty.add(("group", rec.pg_id))
        if rec.state == REMOVED:
            self._forget_later(rec)
            return
        if rec.name:
            self.names[(rec.namespace, rec.name)] = rec.pg_id
        creator = rec.spec.get("creator_actor")
        rec.actor_gone = creator is None
        rec.job_gone = bool(rec.spec.get("creator_detached"))
        if creator is not None and not rec.detached:
            self._by_actor.setdefault(creator, set()).add(rec.pg_id)
        if rec.state in (PENDING, RESCHEDULING):
            self.pending[rec.pg_id] = None

    def created(self, rec: GroupRecord) -> None:
        rec.state = CREATED
        rec.latency_ms = (time.time() - rec.created_at) * 1000
        self.pending.pop(rec.pg_id, None)
        self.dirty.add(("group", rec.pg_id))

    def requeue(self, rec: GroupRecord) -> None:
        """A placement attempt failed: what it placed is placed no more."""
        for i in rec.placing:
            rec.nodes[i] = None
        if all(n is None for n in rec.nodes):
            rec.nodes = []
        rec.placing = []
        rec.refused = False
        self.pending[rec.pg_id] = None

    def lost_bundles(self, rec: GroupRecord, node_id: bytes) -> None:
        """The bundles on a dead node are to be placed again."""
        rec.nodes = [None if n == node_id else n for n in rec.nodes]
        if all(n is None for n in rec.nodes):
            rec.nodes = []
        rec.state = RESCHEDULING
        self.pending[rec.pg_id] = None
        self.dirty.add(("group", rec.pg_id))

    def removed(self, rec: GroupRecord) -> None:
        creator = rec.spec.get("creator_actor")
        if creator is not None:
            self._by_actor.get(creator, set()).discard(rec.pg_id)
        rec.state = REMOVED
        rec.reserving.clear()
        self.pending.pop(rec.pg_id, None)
        self.dirty.add(("group", rec.pg_id))
        if rec.name and self.names.get((rec.namespace, rec.name)) == rec.pg_id:
            del self.names[(rec.namespace, rec.name)]
        self._forget_later(rec)

    def _forget_later(self, rec: GroupRecord) -> None:
        self._removed[rec.pg_id] = None
        while len(self._removed) > KEEP_REMOVED:
            old, _ = self._removed.popitem(last=False)
            self.groups.pop(old, None)
            self.dirty.add(("group", old))

    def after_restart(self) -> None:
        """A restarted head: the jobs it recovered are over (their drivers must reconnect), so
        their non-detached groups are removed; detached ones are placed again from scratch (the
        nodes register anew, with new ids)."""
        for rec in list(self.groups.values()):
            if rec.state == REMOVED:
                continue
            if not rec.detached:
                self.removed(rec)
            else:
                rec.state, rec.nodes, rec.placing = PENDING, [], []
                self.pending[rec.pg_id] = None
                self.dirty.add(("group", rec.pg_id))

    # A non-detached group lives while its creating job or its creating actor does, as in Ray:
    # made by a driver or a task, the actor side counts as gone from the start; made by a
    # detached actor, the job side does.
    def creator_actor_gone(self, actor_id: bytes) -> list[GroupRecord]:
        """An actor is dead for good: the groups it made that are now to be removed (an
        index, not a scan: asked at every actor death)."""
        out = []
        for pg_id in self._by_actor.pop(actor_id, ()):
            rec = self.groups.get(pg_id)
            if rec is not None and rec.state != REMOVED:
                rec.actor_gone = True
                if rec.job_gone:
                    out.append(rec)
        return out

    def job_gone(self, job_id: int) -> list[GroupRecord]:
        """A job ended (or its driver died): its groups that are now to be removed."""
        out = []
        for rec in self.groups.values():
            if rec.state != REMOVED and not rec.detached and rec.spec.get("job_id") == job_id:
                rec.job_gone = True
                if rec.actor_gone:
                    out.append(rec)
        return out
