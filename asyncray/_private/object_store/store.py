"""The node's object store bookkeeping: which segments exist, who owns them, how much is used.

Pure: the node manager does the I/O (unlinking). Segments are created by the writer (a driver
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


class StoreFull(Exception):
    def __init__(self, requested: int, used: int, capacity: int, objects: int) -> None:
        self.requested, self.used, self.capacity, self.objects = requested, used, capacity, objects
        super().__init__(
            f"cannot store an object of {requested:,} bytes: {used:,} of {capacity:,} bytes are in use "
            f"by {objects} live object(s)."
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
            raise StoreFull(size, self.used, self.capacity, len(self.objects))
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
        self.used -= obj.size
        owned = self.by_owner.get(obj.owner)
        if owned is not None:
            owned.discard(object_id)
            if not owned:
                del self.by_owner[obj.owner]
        return obj

    def free_owner(self, owner: str) -> list[StoredObject]:
        return [o for oid in list(self.by_owner.get(owner, ())) if (o := self.free(oid)) is not None]
