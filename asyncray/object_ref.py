"""ObjectRef: a handle to a value that a task returns or `put` stores.

It holds the object's id and its owner's address. While any ObjectRef (or a task in flight
that takes it) exists in a process, that process keeps the object reachable; pickling a ref
into an argument, a return value or actor state hands the receiver a *borrowed* ref that
resolves through the owner. `await ref`, `ref.future()` and asyncio's `wait`, `gather`,
`wait_for` and `as_completed` all work.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any, Generator, Generic, TypeVar

T = TypeVar("T")


class ObjectRef(Generic[T]):
    __slots__ = ("_id", "_owner", "_client", "__weakref__")

    def __init__(self, object_id: bytes, owner: str, client: Any) -> None:
        self._id = object_id
        self._owner = owner
        self._client = client
        client.add_ref(object_id)

    def __del__(self) -> None:
        try:
            self._client.release_ref(self._id)
        except Exception:  # interpreter shutdown
            pass

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:24]

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __reduce__(self):
        from asyncray._private.serialization import note_ref

        note_ref(self)
        return _rebuild_ref, (self._id, self._owner)

    def __await__(self) -> Generator[Any, None, T]:
        return self._client.get_async([self], None, single=True).__await__()

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future resolved with the value (or the task's error)."""
        return self._client.future(self)

    def as_future(self):
        """An asyncio future in the running loop (Ray's `ref.as_future()`)."""
        import asyncio

        return asyncio.ensure_future(self._client.get_async([self], None, single=True))


def _rebuild_ref(object_id: bytes, owner: str) -> ObjectRef:
    from asyncray._private.runtime import current_client

    return ObjectRef(object_id, owner, current_client())
