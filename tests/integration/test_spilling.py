"""A full store spills to disk and restores on get; ObjectStoreFullError only when it cannot."""
from __future__ import annotations

import os

import numpy as np
import pytest

import asyncray as ray
from asyncray._private import runtime

MB = 2**20


@pytest.fixture
def small_store():
    ray.init(num_cpus=1, object_store_memory=50 * MB)
    yield runtime.current()
    ray.shutdown()


def test_more_live_data_than_store_memory_stays_readable(small_store):
    refs = [ray.put(np.full(20 * MB // 8, i, dtype=np.float64)) for i in range(6)]  # 120 MB in a 50 MB store
    spill_dir = os.path.join(small_store.session_dir, "spill")
    assert len(os.listdir(spill_dir)) >= 3
    assert [float(ray.get(r)[0]) for r in refs] == [float(i) for i in range(6)]

    @ray.remote
    def last(a):
        return float(a[-1])

    assert ray.get([last.remote(r) for r in refs]) == [float(i) for i in range(6)]
    del refs
    import gc
    import time

    deadline = time.monotonic() + 10
    while os.listdir(spill_dir):  # spilled files go when their objects are freed
        gc.collect()
        assert time.monotonic() < deadline, os.listdir(spill_dir)
        time.sleep(0.01)


def test_object_larger_than_store_raises_store_full(small_store):
    with pytest.raises(ray.exceptions.ObjectStoreFullError, match="larger than the whole store"):
        ray.put(np.zeros(60 * MB // 8))
    assert float(ray.get(ray.put(np.ones(10)))[0]) == 1.0


def test_store_larger_than_dev_shm_is_refused_at_init():
    with pytest.raises(ValueError, match="shm-size"):
        ray.init(num_cpus=1, object_store_memory=10**15)
    assert not ray.is_initialized()
