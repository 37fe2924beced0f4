"""Message records and their msgpack encoding.

A message is a NamedTuple subclass registered with a fixed small integer tag; on the wire it is
the msgpack array `[tag, *fields]`. Several messages to one peer within a loop tick travel as
one zmq frame holding an array of such arrays (see sockets.Endpoint). NamedTuples are used
because msgpack packs tuples natively and `_make` rebuilds them cheaply: no per-field code.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, TypeVar

import msgpack

CODEC_VERSION = 1

_BY_TAG: dict[int, type] = {}
_TAG_OF: dict[type, int] = {}

M = TypeVar("M")


def message(tag: int) -> Callable[[type[M]], type[M]]:
    """Class decorator: register a NamedTuple message class under `tag`."""

    def register(cls: type[M]) -> type[M]:
        if tag in _BY_TAG:
            raise RuntimeError(f"message tag {tag} used by {_BY_TAG[tag].__name__} and {cls.__name__}")
        _BY_TAG[tag] = cls
        _TAG_OF[cls] = tag
        return cls

    return register


def tag_of(cls: type) -> int:
    return _TAG_OF[cls]


_packer = msgpack.Packer(use_bin_type=True)


def encode_batch(msgs: list[NamedTuple]) -> bytes:
    return msgpack.packb([(_TAG_OF[type(m)], *m) for m in msgs], use_bin_type=True)


def decode_batch(frame: bytes | memoryview) -> list[Any]:
    out = []
    for item in msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=False):
        out.append(_BY_TAG[item[0]]._make(item[1:]))
    return out
