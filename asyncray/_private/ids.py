"""Identifiers, laid out as in Ray so their hex forms look familiar.

JobID 4 bytes; TaskID 24 = 16 unique + 4 job + 4 spare; ObjectID 28 = TaskID + 4-byte return
index; NodeID and WorkerID 28 bytes (56 hex characters). Ids are made locally, with no round
trip: a per-process random prefix plus a counter, so they are unique cluster-wide.
"""
from __future__ import annotations

import itertools
import os

NODE_ID_LEN = 28
OBJECT_ID_LEN = 28
TASK_ID_LEN = 24


def random_id(n: int = NODE_ID_LEN) -> bytes:
    return os.urandom(n)


class TaskIdGenerator:
    """Makes task ids (and put ids) for one process and one job; thread-safe."""

    __slots__ = ("_prefix", "_job", "_counter")

    def __init__(self, job_id: bytes) -> None:
        self._prefix = os.urandom(8)
        self._job = job_id
        self._counter = itertools.count(1)

    def next_task_id(self) -> bytes:
        # itertools.count is atomic under the GIL: no lock on this hot path.
        n = next(self._counter)
        return self._prefix + n.to_bytes(8, "big") + self._job + b"\0\0\0\0"


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "big")


def task_of(object_id_: bytes) -> bytes:
    return object_id_[:TASK_ID_LEN]


def job_id_from_int(n: int) -> bytes:
    return n.to_bytes(4, "big")
