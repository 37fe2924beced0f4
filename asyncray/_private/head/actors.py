"""The head's actor table: lifecycle PENDING_CREATION -> ALIVE -> (RESTARTING -> ALIVE)* -> DEAD,
names per namespace, owners, and who wants to hear about each actor. Plain state; the server
does the I/O that the transitions call for.

Restart policy as in Ray: a crashed actor restarts while `max_restarts` allows (-1: forever),
constructor re-run, fresh state; ray.kill(no_restart=True), exit_actor() and the death of a
non-detached actor's owner end it for good. A name is freed the moment its actor is dead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asyncray._private.head.tables import SpecNamed
from asyncray._private.protocol import ALIVE, DEAD, PENDING_CREATION, RESTARTING


@dataclass
class ActorRecord(SpecNamed):
    actor_id: bytes
    spec: dict
    state: str = PENDING_CREATION
    address: str = ""
    incarnation: int = 0
    num_restarts: int = 0
    lease_id: int | None = None
    lease_req: int | None = None
    node_id: bytes | None = None  # where its lease is (or was asked for)
    error: bytes | None = None
    subscribers: set = field(default_factory=set)

    @property
    def owner(self) -> str:
        return self.spec.get("owner_address", "")

    def can_restart(self) -> bool:
        limit = self.spec.get("max_restarts", 0)
        return limit == -1 or self.num_restarts < limit

    def info(self) -> dict[str, Any]:
        """What a process needs to build a handle to this actor."""
        return {"actor_id": self.actor_id, "class_name": self.spec.get("class_name"),
                "methods": self.spec.get("methods", {}), "is_async": self.spec.get("is_async", False),
                "token": self.spec.get("token"), "max_task_retries": self.spec.get("max_task_retries", 0),
                "name": self.name or "", "namespace": self.namespace}


class ActorTable:
    def __init__(self) -> None:
        self.actors: dict[bytes, ActorRecord] = {}
        self.names: dict[tuple[str, str], bytes] = {}
        self.by_lease: dict[int, bytes] = {}

    def named(self, namespace: str, name: str) -> ActorRecord | None:
        aid = self.names.get((namespace, name))
        return self.actors.get(aid) if aid is not None else None

    def add(self, rec: ActorRecord) -> None:
        self.actors[rec.actor_id] = rec
        if rec.name:
            self.names[(rec.namespace, rec.name)] = rec.actor_id

    def set_lease(self, rec: ActorRecord, lease_id: int | None) -> None:
        if rec.lease_id is not None:
            self.by_lease.pop(rec.lease_id, None)
        rec.lease_id = lease_id
        if lease_id is not None:
            self.by_lease[lease_id] = rec.actor_id

    def alive(self, rec: ActorRecord, address: str) -> None:
        rec.state = ALIVE
        rec.address = address

    def restarting(self, rec: ActorRecord) -> None:
        rec.state = RESTARTING
        rec.address = ""
        rec.num_restarts += 1
        rec.incarnation += 1
        self.set_lease(rec, None)

    def dead(self, rec: ActorRecord, error: bytes | None) -> None:
        rec.state = DEAD
        rec.address = ""
        rec.error = error
        self.set_lease(rec, None)
        if rec.name and self.names.get((rec.namespace, rec.name)) == rec.actor_id:
            del self.names[(rec.namespace, rec.name)]

    def owned_by(self, address: str) -> list[ActorRecord]:
        return [r for r in self.actors.values() if r.owner == address and not r.detached and r.state != DEAD]

    def list_named(self, namespace: str | None) -> list[list[str]]:
        return [[name, ns] for (ns, name), aid in self.names.items()
                if (namespace is None or ns == namespace) and self.actors[aid].state != DEAD]
