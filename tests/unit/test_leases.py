"""Unit tests for core/leases.py: how many tasks go to a leased worker, and how many leases to ask for."""
from __future__ import annotations

import time

import pytest

from asyncray._private.core.leases import Lease, ShapeQueue

DEPTH = 16


class FakeSpec:
    """Stands in for a TaskSpec: ShapeQueue only reads `pushed_at` (time.perf_counter based)."""

    def __init__(self, pushed_at: float | None = None) -> None:
        self.pushed_at = time.perf_counter() if pushed_at is None else pushed_at


def _queue(single: bool = False) -> ShapeQueue:
    return ShapeQueue(("f", (("CPU", 1.0),)), {"CPU": 1.0}, None, single)


def _lease(lease_id: int = 1, in_flight: int = 0, pushed_at: float | None = None) -> Lease:
    lease = Lease(lease_id, b"w" * 28, f"ipc:///tmp/w{lease_id}")
    for i in range(in_flight):
        lease.in_flight[i.to_bytes(24, "big")] = FakeSpec(pushed_at)
    return lease


def _short(q: ShapeQueue, seconds: float = 0.0005, n: int = 5) -> None:
    for _ in range(n):
        q.record_duration(seconds)


# ============================================================================ depth
def test_depth_is_one_until_a_duration_is_known():
    q = _queue()
    assert q.avg_s is None
    assert q.depth(DEPTH) == 1


def test_depth_pipelines_short_tasks():
    q = _queue()
    q.record_duration(0.0005)
    assert q.depth(DEPTH) == DEPTH
    assert q.depth(4) == 4


def test_depth_one_for_long_tasks():
    q = _queue()
    q.record_duration(0.5)
    assert q.depth(DEPTH) == 1


def test_depth_one_for_single_call_tasks():
    q = _queue(single=True)
    _short(q)
    assert q.depth(DEPTH) == 1


def test_record_duration_moving_average():
    q = _queue()
    q.record_duration(1.0)
    assert q.avg_s == pytest.approx(1.0)
    q.record_duration(0.0)
    assert q.avg_s == pytest.approx(0.8)
    q.record_duration(0.0)
    assert q.avg_s == pytest.approx(0.64)


def test_depth_follows_the_average_both_ways():
    q = _queue()
    q.record_duration(0.1)  # long
    assert q.depth(DEPTH) == 1
    for _ in range(60):  # becomes short
        q.record_duration(0.0001)
    assert q.depth(DEPTH) == DEPTH
    for _ in range(60):  # and long again
        q.record_duration(0.05)
    assert q.depth(DEPTH) == 1


# ============================================================================ room
def test_room_empty_lease():
    q = _queue()
    assert q.room(_lease(), DEPTH, time.perf_counter()) == 1
    _short(q)
    assert q.room(_lease(), DEPTH, time.perf_counter()) == DEPTH


def test_room_counts_in_flight():
    q = _queue()
    _short(q)
    now = time.perf_counter()
    lease = _lease(in_flight=5, pushed_at=now)
    assert q.room(lease, DEPTH, now) == DEPTH - 5
    full = _lease(in_flight=DEPTH, pushed_at=now)
    assert q.room(full, DEPTH, now) == 0


def test_room_never_negative():
    q = _queue()
    q.record_duration(1.0)  # depth drops to 1 while several tasks are still in flight
    now = time.perf_counter()
    assert q.room(_lease(in_flight=4, pushed_at=now), DEPTH, now) == 0


def test_room_one_at_a_time_for_long_tasks():
    q = _queue()
    q.record_duration(1.0)
    now = time.perf_counter()
    assert q.room(_lease(), DEPTH, now) == 1
    assert q.room(_lease(in_flight=1, pushed_at=now), DEPTH, now) == 0


def test_room_zero_for_dead_lease():
    q = _queue()
    _short(q)
    lease = _lease()
    lease.dead = True
    assert q.room(lease, DEPTH, time.perf_counter()) == 0


def test_room_zero_when_oldest_task_runs_far_longer_than_average():
    q = _queue()
    _short(q, 0.0005)
    now = time.perf_counter()
    # Oldest task pushed 1 s ago, average 0.5 ms: the lease is stalled behind a slow call.
    lease = _lease(in_flight=1, pushed_at=now - 1.0)
    assert q.room(lease, DEPTH, now) == 0
    # The same lease judged right after the push has room.
    assert q.room(lease, DEPTH, now - 1.0) == DEPTH - 1


def test_room_uses_the_oldest_in_flight_task():
    q = _queue()
    _short(q, 0.0005)
    now = time.perf_counter()
    lease = _lease()
    lease.in_flight[b"old"] = FakeSpec(now - 1.0)
    lease.in_flight[b"new"] = FakeSpec(now)
    assert q.room(lease, DEPTH, now) == 0
    # Once the slow one is done, the lease has room again.
    del lease.in_flight[b"old"]
    assert q.room(lease, DEPTH, now) == DEPTH - 1


def test_room_stall_threshold_has_a_floor():
    # The stall test waits at least 5 ms (or 5x the average, whichever is larger).
    q = _queue()
    _short(q, 0.0001)  # 5x average = 0.5 ms, below the 5 ms floor
    now = time.perf_counter()
    assert q.room(_lease(in_flight=1, pushed_at=now - 0.003), DEPTH, now) == DEPTH - 1
    assert q.room(_lease(in_flight=1, pushed_at=now - 0.050), DEPTH, now) == 0


# ============================================================================ wanted_requests
def test_wanted_requests_nothing_pending():
    q = _queue()
    assert q.wanted_requests(DEPTH, 64) == 0


def test_wanted_requests_one_per_task_while_duration_unknown():
    q = _queue()
    q.pending.extend(FakeSpec() for _ in range(10))
    assert q.wanted_requests(DEPTH, 64) == 10
    assert q.wanted_requests(DEPTH, 4) == 4


def test_wanted_requests_counts_outstanding_requests_and_leases():
    q = _queue()
    q.pending.extend(FakeSpec() for _ in range(10))
    q.requests.update({1: "n", 2: "n", 3: "n"})
    # 10 pending, 0 room; 3 requests already out, cap 5: 2 more.
    assert q.wanted_requests(DEPTH, 5) == 2
    now = time.perf_counter()
    q.leases[1] = _lease(1, in_flight=1, pushed_at=now)
    q.leases[2] = _lease(2, in_flight=1, pushed_at=now)
    assert q.wanted_requests(DEPTH, 5) == 0  # 3 requests + 2 leases = cap


def test_wanted_requests_subtracts_room_of_held_leases():
    q = _queue()
    _short(q)
    q.leases[1] = _lease(1)  # room DEPTH
    q.pending.extend(FakeSpec() for _ in range(DEPTH))
    assert q.wanted_requests(DEPTH, 64) == 0
    q.pending.extend(FakeSpec() for _ in range(3))
    assert q.wanted_requests(DEPTH, 64) == 3


def test_wanted_requests_long_tasks_one_lease_per_task():
    q = _queue()
    q.record_duration(1.0)
    now = time.perf_counter()
    q.leases[1] = _lease(1, in_flight=1, pushed_at=now)
    q.pending.extend(FakeSpec() for _ in range(5))
    assert q.wanted_requests(DEPTH, 64) == 5
    assert q.wanted_requests(DEPTH, 3) == 2


def test_wanted_requests_asks_for_another_worker_behind_a_stalled_lease():
    q = _queue()
    _short(q)
    q.leases[1] = _lease(1, in_flight=1, pushed_at=time.perf_counter() - 10.0)
    q.pending.extend(FakeSpec() for _ in range(3))
    assert q.wanted_requests(DEPTH, 64) == 3
    assert q.wanted_requests(DEPTH, 2) == 1


def test_wanted_requests_never_negative_over_cap():
    q = _queue()
    q.pending.extend(FakeSpec() for _ in range(3))
    q.requests.update(dict.fromkeys(range(10), "n"))
    assert q.wanted_requests(DEPTH, 4) == 0
