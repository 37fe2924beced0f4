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
    __slots__ = ("_id", "_owner", "_client", "_done_callbacks", "__weakref__")

    def __init__(self, object_id: bytes, owner: str, client: Any) -> None:
        self._id = object_id
        self._owner = owner
        self._client = client
        self._done_callbacks: dict | None = None
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

    # -- the parts of the asyncio Future protocol that asyncio.wait() uses ----------------------
    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        """Call fn(self) once the value is available, in the caller's event loop if it has one."""
        import asyncio

        try:
            loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._done_callbacks is None:
            self._done_callbacks = {}
        token = self._done_callbacks.setdefault(fn, [True])

        def fire(_payload: Any) -> None:
            if not token[0]:
                return
            if loop is None:
                fn(self)
                return
            try:
                loop.call_soon_threadsafe(fn, self)
            except RuntimeError:  # that loop has closed
                pass

        self._client.when_ready(self, fire)

    def remove_done_callback(self, fn: Any) -> int:
        token = (self._done_callbacks or {}).pop(fn, None)
        if token is None:
            return 0
        token[0] = False
        return 1

    def done(self) -> bool:
        return self._client.ready_now(self)

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        from asyncray._private import protocol, serialization

        payload = self._client.ready_payload(self)
        if payload is None or payload[0] != protocol.ERROR:
            return None
        return serialization.deserialize_exception(payload[1])

    def result(self) -> T:
        from asyncray._private.api import get

        return get(self)

    def as_future(self):
        """An asyncio future in the running loop (Ray's `ref.as_future()`)."""
        import asyncio

        return asyncio.ensure_future(self._client.get_async([self], None, single=True))


def _rebuild_ref(object_id: bytes, owner: str) -> ObjectRef:
    from asyncray._private.runtime import current_client

    return current_client().deserialized_ref(object_id, owner)


class ObjectRefGenerator:
    """What `.remote()` of a generator function returns: one ObjectRef per yielded item,
    available as soon as the task yields it (`for`, `next()`, `async for`).

    An exception raised by the generator takes the place of the next item (its ref raises it)
    and ends the stream. Not picklable, as in Ray.
    """

    def __init__(self, task_id: bytes, submitter: Any) -> None:
        self._task_id = task_id
        self._submitter = submitter
        self._client = submitter.client
        self._next = 1
        self._done = False

    def __iter__(self) -> "ObjectRefGenerator":
        return self

    def __next__(self) -> ObjectRef:
        return self._take(self._submitter.stream_next(self._task_id, self._next, None))

    def __aiter__(self) -> "ObjectRefGenerator":
        return self

    async def __anext__(self) -> ObjectRef:
        if self._done:
            raise StopAsyncIteration
        payload = await self._submitter.stream_next_async(self._task_id, self._next)
        try:
            return self._take(payload)
        except StopIteration:
            raise StopAsyncIteration from None

    def _take(self, payload: list) -> ObjectRef:
        from asyncray._private import ids, protocol

        if self._done:
            raise StopIteration
        if payload[0] == protocol.END:
            self._done = True
            raise StopIteration
        oid = ids.object_id(self._task_id, self._next)
        self._next += 1
        ref = ObjectRef(oid, self._client.address, self._client)
        self._submitter.stream_release(self._task_id, oid)
        return ref

    def is_finished(self) -> bool:
        return self._done

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be pickled, as in Ray: iterate it in the process that "
                        "called .remote(), and pass the ObjectRefs it yields instead.")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def __del__(self) -> None:
        try:
            self._submitter.stream_release(self._task_id, None)
        except Exception:
            pass
