"""The object store's capacity on a small store (object_store_memory=50 MiB).

An object larger than the whole store raises ObjectStoreFullError naming the sizes (a put, a
task argument, a task return); more live data than the store holds in total spills instead of
failing, and zero-copy views taken before a spill keep their values.

Runs its own small cluster (no shared fixture): init in the test, shutdown in finally.
"""
from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import asyncray as ray
from asyncray import exceptions as exc

MB = 2**20
STORE = 50 * MB
DEADLINE_S = 30.0


def _segments_of(ref_hex: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("asyncray-") and n.endswith(ref_hex)]


@pytest.fixture
def small_cluster():
    if ray.is_initialized():  # never share a cluster with another module
        ray.shutdown()
    assert not ray.is_initialized()
    ray.init(num_cpus=1, object_store_memory=STORE)
    try:
        yield
    finally:
        ray.shutdown()


def _store_full_text(err: BaseException) -> str:
    text = str(err)
    assert f"{STORE:,}" in text, text  # the capacity, named
    return text


def test_put_larger_than_store_raises_object_store_full(small_cluster):
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(exc.ObjectStoreFullError) as info:
        ray.put(np.zeros(60 * MB, dtype=np.uint8))
    assert isinstance(info.value, exc.RayError)
    text = _store_full_text(info.value)
    assert "62,91" in text, text  # the requested size: 60 MiB plus a small header (62,91x,xxx bytes)
    # The failed put left no segment behind, and the store still takes objects that fit.
    assert not {n for n in os.listdir("/dev/shm") if n.startswith("asyncray-")} - before
    ok = ray.put(np.ones(30 * MB, dtype=np.uint8))
    assert int(ray.get(ok)[-1]) == 1
    with pytest.raises(exc.ObjectStoreFullError):
        ray.put(b"x" * (STORE + 1))
    assert ray.get(ray.put("small")) == "small"


def test_total_beyond_capacity_spills_instead_of_failing(small_cluster):
    first = ray.put(np.full(30 * MB, 1, dtype=np.uint8))
    view = ray.get(first)  # a zero-copy view into the first object's segment
    second = ray.put(np.full(30 * MB, 2, dtype=np.uint8))  # 60 MiB live in a 50 MiB store
    third = ray.put(np.full(30 * MB, 3, dtype=np.uint8))
    # A view taken before its object was spilled never changes under its reader.
    assert int(view[0]) == 1 and int(view[-1]) == 1
    for ref, want in ((first, 1), (second, 2), (third, 3), (first, 1)):
        got = ray.get(ref, timeout=DEADLINE_S)
        assert got.nbytes == 30 * MB
        assert int(got[0]) == want and int(got[-1]) == want
        assert not got.flags.writeable
        del got
    del view


def test_task_argument_larger_than_store_is_reported(small_cluster):
    @ray.remote
    def size(a):
        return a.nbytes

    # A large by-value argument is put into the store first; it cannot fit at all.
    with pytest.raises(exc.ObjectStoreFullError) as info:
        ray.get(size.remote(np.zeros(60 * MB, dtype=np.uint8)), timeout=DEADLINE_S)
    _store_full_text(info.value)
    assert ray.get(size.remote(np.zeros(20 * MB, dtype=np.uint8)), timeout=DEADLINE_S) == 20 * MB


def test_task_return_larger_than_store_is_reported(small_cluster):
    @ray.remote
    def make(n):
        return np.zeros(n, dtype=np.uint8)

    ref = make.remote(60 * MB)
    with pytest.raises(exc.ObjectStoreFullError) as info:
        ray.get(ref, timeout=DEADLINE_S)
    assert isinstance(info.value, exc.RayTaskError)
    _store_full_text(info.value)
    assert not _segments_of(ref.hex())
    # The worker survives and stores what fits.
    assert ray.get(make.remote(20 * MB), timeout=DEADLINE_S).nbytes == 20 * MB


def test_freed_objects_make_room_without_spilling(small_cluster):
    import asyncray._private.runtime as runtime_mod

    spill_dir = os.path.join(runtime_mod.current().session_dir, "spill")
    for i in range(6):  # 180 MiB in total, never more than 30 MiB alive
        ref = ray.put(np.full(30 * MB, i, dtype=np.uint8))
        assert int(ray.get(ref)[0]) == i
        oid_hex = ref.hex()
        del ref
        gc.collect()
        # Freeing is asynchronous: wait (bounded) until the store unlinked the segment.
        deadline = time.monotonic() + DEADLINE_S
        while _segments_of(oid_hex):
            assert time.monotonic() < deadline, f"segment of {oid_hex} never unlinked"
            time.sleep(0.01)
    # Each object was freed before the next one was stored: nothing ever had to be spilled.
    assert not os.path.isdir(spill_dir) or not os.listdir(spill_dir)
