"""Unit tests for ids.py: lengths as in Ray, and uniqueness without coordination."""
from __future__ import annotations

import threading

from asyncray._private import ids


def test_lengths():
    assert ids.OBJECT_ID_LEN == 28
    assert ids.TASK_ID_LEN == 24
    assert ids.NODE_ID_LEN == 28
    gen = ids.TaskIdGenerator(ids.job_id_from_int(1))
    tid = gen.next_task_id()
    assert isinstance(tid, bytes) and len(tid) == 24
    oid = ids.object_id(tid, 0)
    assert len(oid) == 28
    assert len(oid.hex()) == 56
    node = ids.random_id()
    assert len(node) == 28
    assert len(node.hex()) == 56
    assert len(ids.random_id(8)) == 8


def test_job_id_is_four_bytes_and_embedded():
    job = ids.job_id_from_int(258)
    assert job == b"\x00\x00\x01\x02"
    tid = ids.TaskIdGenerator(job).next_task_id()
    assert tid[16:20] == job
    assert tid[20:24] == b"\0\0\0\0"


def test_object_id_is_task_id_plus_index():
    tid = ids.TaskIdGenerator(ids.job_id_from_int(3)).next_task_id()
    o0, o1, o7 = ids.object_id(tid, 0), ids.object_id(tid, 1), ids.object_id(tid, 7)
    assert len({o0, o1, o7}) == 3
    for o in (o0, o1, o7):
        assert o[:24] == tid
        assert ids.task_of(o) == tid
    assert o7[24:] == (7).to_bytes(4, "big")


def test_uniqueness_within_a_generator():
    gen = ids.TaskIdGenerator(ids.job_id_from_int(1))
    tids = [gen.next_task_id() for _ in range(100_000)]
    assert len(set(tids)) == len(tids)
    assert all(len(t) == 24 for t in tids)


def test_uniqueness_across_generators_of_the_same_job():
    job = ids.job_id_from_int(1)
    a, b = ids.TaskIdGenerator(job), ids.TaskIdGenerator(job)
    ta = {a.next_task_id() for _ in range(10_000)}
    tb = {b.next_task_id() for _ in range(10_000)}
    assert len(ta) == len(tb) == 10_000
    assert not ta & tb


def test_uniqueness_across_threads():
    gen = ids.TaskIdGenerator(ids.job_id_from_int(1))
    out: list[list[bytes]] = [[] for _ in range(4)]

    def worker(i: int) -> None:
        out[i] = [gen.next_task_id() for _ in range(20_000)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [t for part in out for t in part]
    assert len(flat) == 80_000
    assert len(set(flat)) == 80_000


def test_random_ids_differ():
    assert len({ids.random_id() for _ in range(1000)}) == 1000
