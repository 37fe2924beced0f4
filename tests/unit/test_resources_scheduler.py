"""Unit tests for the node's resource arithmetic (resources.py) and lease queue (scheduler.py).

Pure logic: no processes, no sockets.
"""
from __future__ import annotations

import pytest

from asyncray._private.node.resources import SCALE, ResourcePool, from_units, to_units
from asyncray._private.node.scheduler import LeaseRequest, LeaseScheduler


# ============================================================================ resources
def test_scale_is_ten_thousand():
    assert SCALE == 10_000


def test_to_units_fixed_point():
    assert to_units({"CPU": 1.0}) == {"CPU": 10_000}
    assert to_units({"CPU": 0.5, "GPU": 0.25}) == {"CPU": 5_000, "GPU": 2_500}
    assert to_units({"CPU": 0.0001}) == {"CPU": 1}
    # Rounds to the nearest unit instead of truncating float noise away.
    assert to_units({"CPU": 0.1 + 0.2}) == {"CPU": 3_000}
    assert to_units({"CPU": 0.29999999}) == {"CPU": 3_000}
    # Zero amounts are not requirements at all.
    assert to_units({"CPU": 0, "GPU": 1}) == {"GPU": 10_000}
    assert to_units({}) == {}


def test_from_units_round_trip():
    shape = {"CPU": 1.5, "GPU": 0.25, "custom": 3.0}
    assert from_units(to_units(shape)) == shape


def test_fractions_add_up_exactly():
    # Ten 0.1 CPU requests exactly fill one CPU, with no float drift.
    pool = ResourcePool({"CPU": 1.0})
    tenth = to_units({"CPU": 0.1})
    for _ in range(10):
        assert pool.fits(tenth)
        pool.acquire(tenth)
    assert pool.free["CPU"] == 0
    assert not pool.fits(tenth)
    for _ in range(10):
        pool.release(tenth)
    assert pool.free == pool.total == {"CPU": 10_000}


def test_fits_acquire_release():
    pool = ResourcePool({"CPU": 2.0, "GPU": 1.0})
    one_cpu = to_units({"CPU": 1})
    gpu = to_units({"CPU": 1, "GPU": 1})
    assert pool.fits(one_cpu) and pool.fits(gpu)
    pool.acquire(gpu)
    assert pool.free == {"CPU": 10_000, "GPU": 0}
    assert pool.fits(one_cpu)
    assert not pool.fits(gpu)
    pool.acquire(one_cpu)
    assert not pool.fits(one_cpu)
    assert pool.fits({})  # an empty shape always fits
    pool.release(one_cpu)
    pool.release(gpu)
    assert pool.free == pool.total


def test_fits_unknown_resource_is_false():
    pool = ResourcePool({"CPU": 4.0})
    assert not pool.fits(to_units({"TPU": 1}))
    assert not pool.feasible(to_units({"TPU": 1}))


def test_feasible_ignores_usage():
    pool = ResourcePool({"CPU": 2.0})
    pool.acquire(to_units({"CPU": 2}))
    assert not pool.fits(to_units({"CPU": 1}))
    assert pool.feasible(to_units({"CPU": 2}))
    assert not pool.feasible(to_units({"CPU": 2.0001}))
    assert not pool.feasible(to_units({"CPU": 3}))


def test_missing_names_only_what_the_node_lacks():
    pool = ResourcePool({"CPU": 2.0, "GPU": 1.0})
    assert pool.missing(to_units({"CPU": 1, "GPU": 1})) == {}
    assert pool.missing(to_units({"CPU": 4, "GPU": 1})) == {"CPU": 4.0}
    assert pool.missing(to_units({"CPU": 1, "TPU": 0.5})) == {"TPU": 0.5}
    # Usage does not matter: missing is about the node's totals.
    pool.acquire(to_units({"CPU": 2}))
    assert pool.missing(to_units({"CPU": 2})) == {}


def test_snapshot_in_floats_and_free_never_negative():
    pool = ResourcePool({"CPU": 2.0, "mem": 0.5})
    pool.acquire(to_units({"CPU": 0.5}))
    total, free = pool.snapshot()
    assert total == {"CPU": 2.0, "mem": 0.5}
    assert free == {"CPU": 1.5, "mem": 0.5}
    # Over-acquiring (a blocked worker's CPU lent out) must not report negative availability.
    pool.acquire(to_units({"CPU": 2}))
    assert pool.free["CPU"] < 0
    total, free = pool.snapshot()
    assert free["CPU"] == 0.0
    assert total["CPU"] == 2.0


def test_zero_total_resources_dropped():
    pool = ResourcePool({"CPU": 1.0, "GPU": 0.0})
    assert pool.total == {"CPU": 10_000}


# ============================================================================ scheduler
def _req(req_id: int, shape: dict[str, float], owner: bytes = b"owner-a") -> LeaseRequest:
    return LeaseRequest(req_id=req_id, owner=owner, shape=shape, units={}, job_id=1, runtime_env=None)


def _ids(reqs) -> list[tuple[bytes, int]]:
    return [(r.owner, r.req_id) for r in reqs]


def test_submit_computes_units_and_key():
    sched = LeaseScheduler(ResourcePool({"CPU": 2}))
    r = _req(1, {"GPU": 1.0, "CPU": 0.5})
    sched.submit(r)
    assert r.units == {"CPU": 5_000, "GPU": 10_000}
    assert r.key == (("CPU", 0.5), ("GPU", 1.0))  # sorted: insertion order does not matter
    assert r.key == LeaseScheduler.shape_key({"CPU": 0.5, "GPU": 1.0})
    assert sched.pending() == 1


def test_fifo_within_a_shape():
    sched = LeaseScheduler(ResourcePool({"CPU": 3}))
    for i in range(1, 6):
        sched.submit(_req(i, {"CPU": 1}))
    granted = list(sched.dispatch())
    assert [r.req_id for r in granted] == [1, 2, 3]
    assert sched.pending() == 2
    assert list(sched.dispatch()) == []  # nothing fits until resources come back
    sched.pool.release(granted[0].units)
    assert [r.req_id for r in sched.dispatch()] == [4]
    sched.pool.release(granted[1].units)
    sched.pool.release(granted[2].units)
    assert [r.req_id for r in sched.dispatch()] == [5]
    assert sched.pending() == 0


def test_dispatch_acquires_resources():
    pool = ResourcePool({"CPU": 4, "GPU": 1})
    sched = LeaseScheduler(pool)
    sched.submit(_req(1, {"CPU": 1.5, "GPU": 0.5}))
    sched.submit(_req(2, {"CPU": 1}))
    granted = list(sched.dispatch())
    assert len(granted) == 2
    assert pool.free == {"CPU": 40_000 - 15_000 - 10_000, "GPU": 5_000}
    for r in granted:
        pool.release(r.units)
    assert pool.free == pool.total


def test_dispatch_acquires_as_it_yields():
    # Resources are taken when a request is yielded, so a caller that stops early only
    # holds what it received.
    pool = ResourcePool({"CPU": 4})
    sched = LeaseScheduler(pool)
    for i in range(4):
        sched.submit(_req(i, {"CPU": 1}))
    gen = sched.dispatch()
    first = next(gen)
    assert first.req_id == 0
    assert pool.free["CPU"] == 30_000
    assert sched.pending() == 3


def test_big_request_does_not_block_small_one_of_another_shape():
    pool = ResourcePool({"CPU": 2})
    sched = LeaseScheduler(pool)
    sched.submit(_req(1, {"CPU": 1}))
    assert [r.req_id for r in sched.dispatch()] == [1]
    # A 2-CPU request cannot fit now (1 CPU in use); a 1-CPU request queued after it can.
    sched.submit(_req(2, {"CPU": 2}))
    sched.submit(_req(3, {"CPU": 1}))
    assert [r.req_id for r in sched.dispatch()] == [3]
    assert sched.pending() == 1
    # Once everything is back, the big one is granted.
    pool.release(to_units({"CPU": 1}))
    pool.release(to_units({"CPU": 1}))
    assert [r.req_id for r in sched.dispatch()] == [2]
    assert pool.free["CPU"] == 0


def test_head_of_a_shape_blocks_its_own_shape_only():
    # Within one shape, FIFO holds: a later request of the same shape never overtakes.
    pool = ResourcePool({"CPU": 1, "GPU": 1})
    sched = LeaseScheduler(pool)
    sched.submit(_req(1, {"GPU": 2}))  # infeasible, stays queued
    sched.submit(_req(2, {"GPU": 2}))
    sched.submit(_req(3, {"CPU": 1}))
    assert [r.req_id for r in sched.dispatch()] == [3]
    assert sched.pending() == 2


def test_cancel_removes_a_queued_request():
    sched = LeaseScheduler(ResourcePool({"CPU": 1}))
    r1, r2 = _req(1, {"CPU": 1}), _req(2, {"CPU": 1})
    sched.submit(r1)
    sched.submit(r2)
    assert sched.cancel(b"owner-a", 1) is r1
    assert sched.pending() == 1
    assert sched.cancel(b"owner-a", 1) is None  # twice: nothing
    assert sched.cancel(b"owner-b", 2) is None  # another owner's id space
    assert [r.req_id for r in sched.dispatch()] == [2]


def test_cancel_last_request_drops_the_shape_queue():
    sched = LeaseScheduler(ResourcePool({"CPU": 1}))
    sched.submit(_req(1, {"GPU": 1}))
    sched.cancel(b"owner-a", 1)
    assert sched.pending() == 0
    assert sched._queues == {}
    assert sched.newly_infeasible() == []


def test_cancel_after_dispatch_is_a_no_op():
    pool = ResourcePool({"CPU": 1})
    sched = LeaseScheduler(pool)
    sched.submit(_req(1, {"CPU": 1}))
    assert len(list(sched.dispatch())) == 1
    assert sched.cancel(b"owner-a", 1) is None
    assert pool.free["CPU"] == 0  # cancel never releases granted resources


def test_cancel_owner():
    sched = LeaseScheduler(ResourcePool({"CPU": 1}))
    sched.submit(_req(1, {"CPU": 1}, owner=b"a"))
    sched.submit(_req(2, {"CPU": 2}, owner=b"a"))
    sched.submit(_req(1, {"CPU": 1}, owner=b"b"))  # same req id, other owner
    sched.submit(_req(3, {"CPU": 1}, owner=b"a"))
    gone = sched.cancel_owner(b"a")
    assert sorted(_ids(gone)) == [(b"a", 1), (b"a", 2), (b"a", 3)]
    assert sched.pending() == 1
    assert _ids(sched.dispatch()) == [(b"b", 1)]
    assert sched.cancel_owner(b"a") == []
    assert sched.cancel_owner(b"nobody") == []


def test_requests_of_two_owners_same_id_are_distinct():
    sched = LeaseScheduler(ResourcePool({"CPU": 2}))
    sched.submit(_req(7, {"CPU": 1}, owner=b"a"))
    sched.submit(_req(7, {"CPU": 1}, owner=b"b"))
    assert sched.pending() == 2
    assert _ids(sched.dispatch()) == [(b"a", 7), (b"b", 7)]


def test_newly_infeasible_reported_once():
    sched = LeaseScheduler(ResourcePool({"CPU": 2}))
    big = _req(1, {"CPU": 4})
    sched.submit(big)
    sched.submit(_req(2, {"CPU": 1}))
    assert sched.newly_infeasible() == [big]
    assert sched.newly_infeasible() == []
    # Another request of the same infeasible shape is not reported again.
    sched.submit(_req(3, {"CPU": 4}))
    assert sched.newly_infeasible() == []
    # A different infeasible shape is.
    gpu = _req(4, {"GPU": 1})
    sched.submit(gpu)
    assert sched.newly_infeasible() == [gpu]
    assert sched.newly_infeasible() == []
    # Feasible-but-busy is not infeasible.
    list(sched.dispatch())
    sched.submit(_req(5, {"CPU": 2}))
    assert sched.newly_infeasible() == []


def test_infeasible_requests_stay_queued_and_cancelable():
    sched = LeaseScheduler(ResourcePool({"CPU": 1}))
    sched.submit(_req(1, {"CPU": 8}))
    assert list(sched.dispatch()) == []
    assert sched.pending() == 1
    assert [r.req_id for r in sched.newly_infeasible()] == [1]
    assert sched.cancel(b"owner-a", 1) is not None
    assert sched.pending() == 0


@pytest.mark.parametrize("n_shapes", [1, 3])
def test_dispatch_drains_everything_that_fits(n_shapes):
    pool = ResourcePool({"CPU": 100})
    sched = LeaseScheduler(pool)
    shapes = [{"CPU": 1 + k * 0.5} for k in range(n_shapes)]
    for i in range(30):
        sched.submit(_req(i, shapes[i % n_shapes]))
    granted = list(sched.dispatch())
    assert len(granted) == 30
    assert sched.pending() == 0
    assert pool.free["CPU"] == 100 * SCALE - sum(r.units["CPU"] for r in granted)
    # Order within each shape is submission order.
    for s in shapes:
        key = LeaseScheduler.shape_key(s)
        ids = [r.req_id for r in granted if r.key == key]
        assert ids == sorted(ids)


def test_fork_commands_never_block_the_node_manager(tmp_path):
    """1,000 fork commands at once overflow a pipe; writing them must not block the loop
    (the template writes its events to us meanwhile: two blocked writers deadlock)."""
    import asyncio
    import os

    from asyncray._private.node.worker_pool import WorkerPool

    loop = asyncio.new_event_loop()
    pool = WorkerPool.__new__(WorkerPool)
    r, w = os.pipe()
    os.set_blocking(w, False)
    pool._loop, pool._cmd_w, pool._cmd_buf, pool._writer_armed = loop, w, bytearray(), False
    pool.workers = {}
    try:
        for i in range(1000):  # ~300 KB of commands, far beyond a 64 KiB pipe
            pool.start(os.urandom(28), "k", None, None, {"pad": "x" * 200})
        assert pool._cmd_buf and pool._writer_armed  # the rest waits for the pipe, not us
        received = b""
        while pool._cmd_buf or not received.endswith(b"\n") or received.count(b"\n") < 1000:
            received += os.read(r, 1 << 20)
            loop.run_until_complete(asyncio.sleep(0))
        assert received.count(b"\n") == 1000
    finally:
        if pool._writer_armed:
            loop.remove_writer(w)
        os.close(r)
        os.close(w)
        loop.close()
