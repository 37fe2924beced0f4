"""Reference counting as in Ray's ownership model, as plain bookkeeping (no I/O, no locks).

For each object it owns, a process counts:
  - local refs: live ObjectRef instances here (task specs in flight hold theirs);
  - borrowers: other processes holding a ref (key: their address), and objects that contain
    a ref to it (key: "obj:<container id hex>"), registered before the ref could be dropped
    by whoever passed it on.
An owned object is freed when both are empty. For an object it *borrows*, a process counts
local refs only, and tells the owner when that count reaches zero.

Why borrowers register before anyone's count may drop: a borrower registers when it
deserialises the ref, while the sender still holds it (a task's caller keeps the spec's refs
until the reply, and a worker confirms its registrations before replying); a container's
creator registers the container's hold on the same connection on which it later sends its own
release, so the owner sees them in that order.
"""
from __future__ import annotations


def container_key(container_id: bytes) -> str:
    return "obj:" + container_id.hex()


class References:
    def __init__(self) -> None:
        self.local: dict[bytes, int] = {}
        self.borrowers: dict[bytes, set[str]] = {}
        self.borrowed: dict[bytes, str] = {}  # id -> owner address, for ids we registered as borrower
        self.contained: dict[bytes, list[tuple[bytes, str]]] = {}  # container -> refs inside it

    # -- local refs ------------------------------------------------------------------------
    def add_local(self, oid: bytes) -> int:
        n = self.local.get(oid, 0) + 1
        self.local[oid] = n
        return n

    def release_local(self, oid: bytes) -> bool:
        """Drop one local ref; True when none is left."""
        n = self.local.get(oid, 0) - 1
        if n > 0:
            self.local[oid] = n
            return False
        self.local.pop(oid, None)
        return True

    # -- borrowers of objects we own -------------------------------------------------------
    def add_borrower(self, oid: bytes, key: str) -> None:
        self.borrowers.setdefault(oid, set()).add(key)

    def remove_borrower(self, oid: bytes, key: str) -> None:
        keys = self.borrowers.get(oid)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.borrowers[oid]

    def remove_borrower_everywhere(self, key: str) -> list[bytes]:
        """A borrower process died: forget it; returns the ids it held."""
        hit = [oid for oid, keys in self.borrowers.items() if key in keys]
        for oid in hit:
            self.remove_borrower(oid, key)
        return hit

    def in_use(self, oid: bytes) -> bool:
        return oid in self.local or oid in self.borrowers

    # -- refs we borrow ---------------------------------------------------------------------
    def note_borrowed(self, oid: bytes, owner: str) -> bool:
        """True the first time: the caller must register us with the owner."""
        if oid in self.borrowed:
            return False
        self.borrowed[oid] = owner
        return True

    def pop_borrowed(self, oid: bytes) -> str | None:
        return self.borrowed.pop(oid, None)

    # -- refs contained in objects we own --------------------------------------------------
    def set_contained(self, container: bytes, refs: list[tuple[bytes, str]]) -> None:
        if refs:
            self.contained[container] = refs

    def pop_contained(self, container: bytes) -> list[tuple[bytes, str]]:
        return self.contained.pop(container, [])
