"""Small records shared by the core client's modules: the object table's entry, and helpers."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from asyncray._private import protocol as p, serialization

PENDING = None


class Entry:
    __slots__ = ("payload", "callbacks", "owned")

    def __init__(self, owned: bool) -> None:
        self.payload: list | None = PENDING
        self.callbacks: list[Callable[[list], None]] | None = None
        self.owned = owned


class IdRef:
    """The two attributes of an ObjectRef that waiting needs, without counting a reference."""

    __slots__ = ("_id", "_owner")

    def __init__(self, oid: bytes, owner: str) -> None:
        self._id = oid
        self._owner = owner

    def hex(self) -> str:
        return self._id.hex()


def oid_of_segment(segment: str) -> bytes:
    """Segments are named /asyncray-<session>-<object id hex>."""
    return bytes.fromhex(segment.rsplit("-", 1)[1])


def peer_error(address: str, reason: str, node_address: str) -> BaseException:
    from asyncray.exceptions import LocalRayletDiedError, RaySystemError

    if address == node_address:
        return LocalRayletDiedError(f"the node manager at {address} died: {reason}")
    return RaySystemError(f"the process at {address} died: {reason}")


def error_payload(exc: BaseException) -> list:
    return [p.ERROR, serialization.dumps_exception(exc)]


def call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Schedule fn in a waiter's loop; a loop that closed meanwhile no longer wants it."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def retryable(rule: Any, reply: Any) -> bool:
    """Does `retry_exceptions` (True, False, or exception classes) ask to re-run after `reply`?"""
    if rule is True:
        return True
    if not rule:
        return False
    try:
        exc = serialization.deserialize_exception(reply.returns[0][1])
    except Exception:
        return False
    return isinstance(getattr(exc, "cause", exc), tuple(rule))
