"""Ownership and reference counting across processes (Ray's protocol): nothing freed while
reachable, everything freed once unreachable, a dead owner's objects raise OwnerDiedError."""
from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import asyncray as ray
from asyncray import exceptions as exc

pytestmark = pytest.mark.usefixtures("shared_cluster")

BIG = 300_000  # float64s: 2.4 MB, well above the inline limit


def _segment_exists(ref) -> bool:
    return any(name.endswith(ref.hex()) for name in os.listdir("/dev/shm"))


def _wait(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        gc.collect()
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_dropping_last_ref_frees_the_segment():
    ref = ray.put(np.ones(BIG))
    assert _segment_exists(ref)
    hex_id = ref.hex()
    del ref
    _wait(lambda: not any(n.endswith(hex_id) for n in os.listdir("/dev/shm")), "segment not freed")


def test_ref_inside_a_put_keeps_the_inner_object():
    inner = ray.put(np.arange(BIG, dtype=np.float64))
    inner_hex = inner.hex()
    outer = ray.put([inner])
    del inner
    gc.collect()
    # Still reachable through `outer`.
    (again,) = ray.get(outer)
    assert ray.get(again)[-1] == BIG - 1
    del again, outer
    _wait(lambda: not any(n.endswith(inner_hex) for n in os.listdir("/dev/shm")), "inner object not freed")


def test_worker_owned_ref_returned_to_driver():
    @ray.remote
    def make():
        return [ray.put(np.full(BIG, 7.0))]

    (inner,) = ray.get(make.remote())
    assert ray.get(inner)[0] == 7.0


def test_nested_ref_argument_is_borrowed_by_the_task():
    @ray.remote
    def read(box):
        return float(ray.get(box[0]).sum())

    ref = ray.put(np.ones(BIG))
    out = read.remote([ref])
    del ref
    assert ray.get(out) == BIG


def test_owner_died_error():
    @ray.remote(max_calls=1)
    def make_and_exit():
        return [ray.put("owned by a worker that exits after this call")], os.getpid()

    (inner,), pid = ray.get(make_and_exit.remote())
    import psutil

    # The node ends the worker once its owner read the reply: wait for that, then ask.
    _wait(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
          "the worker to exit after max_calls")
    with pytest.raises(exc.OwnerDiedError):
        ray.get(inner, timeout=30)


def test_many_refs_do_not_leak_entries():
    from asyncray._private.runtime import current_client

    client = current_client()

    @ray.remote
    def one():
        return 1

    before = client.object_count()
    for _ in range(3):
        assert sum(ray.get([one.remote() for _ in range(500)])) == 500
    _wait(lambda: client.object_count() <= before, f"{client.object_count() - before} entries left")
