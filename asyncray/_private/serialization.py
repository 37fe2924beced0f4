"""Values to bytes and back: cloudpickle with pickle-5 out-of-band buffers.

A serialised value is a pickle stream ("meta") plus the raw buffers numpy and other
pickle-5-aware types hand out of band, so a large array is never copied into the stream.
Layout (the same in a message and in a shared-memory segment):

    b"\\x00" meta                                     no out-of-band buffers
    b"\\x01" nbuf:u32 meta_len:u64 (off:u64 len:u64)*nbuf  meta  pad  buffers (64-byte aligned)

Reading hands read-only memoryviews of the source to `pickle.loads`, so every numpy array a
`get` returns is read-only and, for segments, a zero-copy view, as in Ray.

ObjectRefs met while pickling are collected (see `collect_refs`): their owner must keep them
alive for as long as a copy of the bytes may still be turned back into a ref.
"""
from __future__ import annotations

import io
import pickle
import struct
import threading
import traceback
from typing import Any, Callable

import cloudpickle

_HDR = struct.Struct("<BIQ")
_BUF = struct.Struct("<QQ")
ALIGN = 64

_local = threading.local()


class Serialized:
    __slots__ = ("meta", "buffers", "size", "refs")

    def __init__(self, meta: bytes, buffers: list[memoryview], refs: list) -> None:
        self.meta = meta
        self.buffers = buffers
        self.refs = refs
        if buffers:
            self.size = self._layout()[0]
        else:
            self.size = 1 + len(meta)

    def _layout(self) -> tuple[int, list[int]]:
        pos = _HDR.size + _BUF.size * len(self.buffers) + len(self.meta)
        offsets = []
        for b in self.buffers:
            pos = (pos + ALIGN - 1) // ALIGN * ALIGN
            offsets.append(pos)
            pos += b.nbytes
        return pos, offsets

    def chunks(self) -> list:
        """The serialised form as a list of bytes-like pieces (for writing without joining)."""
        if not self.buffers:
            return [b"\x00", self.meta]
        total, offsets = self._layout()
        parts: list = [_HDR.pack(1, len(self.buffers), len(self.meta))]
        for b, off in zip(self.buffers, offsets):
            parts.append(_BUF.pack(off, b.nbytes))
        parts.append(self.meta)
        pos = _HDR.size + _BUF.size * len(self.buffers) + len(self.meta)
        for b, off in zip(self.buffers, offsets):
            if off > pos:
                parts.append(b"\0" * (off - pos))
            parts.append(b)
            pos = off + b.nbytes
        return parts

    def to_bytes(self) -> bytes:
        if not self.buffers:
            return b"\x00" + self.meta
        return b"".join(self.chunks())


def serialize(value: Any) -> Serialized:
    """Pickle `value`; raises TypeError naming the object if it cannot be pickled."""
    buffers: list[pickle.PickleBuffer] = []
    refs: list = []
    prev = getattr(_local, "refs", None)
    _local.refs = refs
    try:
        meta = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as e:
        raise TypeError(f"Could not serialize {_describe(value)}: {type(e).__name__}: {e}") from e
    finally:
        _local.refs = prev
    return Serialized(meta, [b.raw() for b in buffers], refs)


def note_ref(ref: Any) -> None:
    """Called by ObjectRef.__reduce__: record a ref nested in the value being pickled."""
    refs = getattr(_local, "refs", None)
    if refs is not None:
        refs.append(ref)


def deserialize(data: bytes | memoryview) -> Any:
    """Rebuild a value from its serialised bytes (or a read-only view of a segment)."""
    view = memoryview(data)
    if view[0] == 0:
        return pickle.loads(view[1:])
    _, nbuf, meta_len = _HDR.unpack_from(view, 0)
    bufs = []
    pos = _HDR.size
    for _ in range(nbuf):
        off, ln = _BUF.unpack_from(view, pos)
        pos += _BUF.size
        bufs.append(view[off : off + ln].toreadonly())
    meta = view[pos : pos + meta_len]
    return pickle.loads(meta, buffers=bufs)


def dumps_function(fn: Callable) -> bytes:
    try:
        return cloudpickle.dumps(fn)
    except Exception as e:
        raise TypeError(f"Could not serialize the remote function {_describe(fn)}: {e}") from e


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} of type {type(value).__qualname__}"


# -- exceptions across processes ---------------------------------------------------------------
_RUNTIME_MARKERS = ("/asyncray/_private/",)


def format_user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` with the runtime's own frames dropped."""
    tb = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in tb if not any(m in f.filename for m in _RUNTIME_MARKERS)]
    out = io.StringIO()
    out.write("Traceback (most recent call last):\n")
    out.write("".join(traceback.format_list(frames)))
    out.write("".join(traceback.format_exception_only(type(exc), exc)))
    return out.getvalue()


def dumps_exception(exc: BaseException) -> bytes:
    """Pickle an exception; if it (or its round trip) fails, send its text instead."""
    try:
        data = cloudpickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        from asyncray.exceptions import RaySystemError

        return cloudpickle.dumps(RaySystemError(f"{type(exc).__name__}: {exc}"))


def deserialize_exception(data: bytes) -> BaseException:
    return pickle.loads(data)
