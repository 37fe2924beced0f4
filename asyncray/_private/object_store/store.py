"""The node's object store bookkeeping: which segments exist, who owns them, how much is used,
and which objects to spill to disk when the store is full.

Pure: the node manager does the I/O (unlinking, spilling, restoring). Segments are created by the writer (a driver
or worker) after the store *reserved* room for them, and are unlinked by the store alone:
when their owner frees them, when their owner dies, and all at shutdown. Unlinking a segment
that a reader still maps is safe on POSIX: the memory lives until the last mapping closes, so
a zero-copy view never sees its memory change under it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StoredObject:
    object_id: bytes
    segment: str
    size: int
    owner: str
    sealed: bool = False
    spilled: str | None = None  # path of the file holding it while it is not in memory


class StoreFull(Exception):
    def __init__(self, requested: int, used: int, capacity: int, objects: int, unspillable: int = 0) -> None:
        self.requested, self.used, self.capacity, self.objects = requested, used, capacity, objects
        why = (f" {unspillable:,} bytes of it belong to objects still being written, which cannot be spilled."
               if unspillable else "")
        if requested > capacity:
            why = " The object is larger than the whole store."
        super().__init__(
            f"cannot store an object of {requested:,} bytes: {used:,} of {capacity:,} bytes are in use "
            f"by {objects} live object(s).{why}"
        )


class ObjectStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.objects: dict[bytes, StoredObject] = {}
        self.by_owner: dict[str, set[bytes]] = {}

    def reserve(self, object_id: bytes, segment: str, size: int, owner: str) -> StoredObject:
        existing = self.objects.get(object_id)
        if existing is not None:  # a retried task writes its return again
            return existing
        if self.used + size > self.capacity:
            raise StoreFull(size, self.used, self.capacity, len(self.objects), self._unsealed_bytes())
        obj = StoredObject(object_id, segment, size, owner)
        self.objects[object_id] = obj
        self.by_owner.setdefault(owner, set()).add(object_id)
        self.used += size
        return obj

    def seal(self, object_id: bytes) -> None:
        obj = self.objects.get(object_id)
        if obj is not None:
            obj.sealed = True

    def free(self, object_id: bytes) -> StoredObject | None:
        obj = self.objects.pop(object_id, None)
        if obj is None:
            return None
        if obj.spilled is None:
            self.used -= obj.size
        owned = self.by_owner.get(obj.owner)
        if owned is not None:
            owned.discard(object_id)
            if not owned:
                del self.by_owner[obj.owner]
        return obj

    def free_owner(self, owner: str) -> list[StoredObject]:
        return [o for oid in list(self.by_owner.get(owner, ())) if (o := self.free(oid)) is not None]

    # -- spilling ------------------------------------------------------------------------------
    def to_spill(self, need: int, keep: bytes | None = None) -> list[StoredObject]:
        """Sealed in-memory objects to spill, oldest first, until `need` more bytes fit; [] if
        spilling cannot make enough room (then nothing should be spilled)."""
        short = self.used + need - self.capacity
        if short <= 0:
            return []
        chosen, freed = [], 0
        for obj in self.objects.values():  # insertion order: least recently created or restored first
            if obj.sealed and obj.spilled is None and obj.object_id != keep:
                chosen.append(obj)
                freed += obj.size
                if freed >= short:
                    return chosen
        return []

    def mark_spilled(self, obj: StoredObject, path: str) -> None:
        obj.spilled = path
        self.used -= obj.size

    def mark_restored(self, obj: StoredObject) -> None:
        obj.spilled = None
        self.used += obj.size
        # Recently used again: last in line for the next spill.
        self.objects[obj.object_id] = self.objects.pop(obj.object_id)

    def _unsealed_bytes(self) -> int:
        return sum(o.size for o in self.objects.values() if not o.sealed and o.spilled is None)

    def spilled_bytes(self) -> int:
        return sum(o.size for o in self.objects.values() if o.spilled is not None)
