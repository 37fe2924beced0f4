"""Regression tests for bugs a review of the runtime found (each hung or lost work before)."""
from __future__ import annotations

import os
import pickle
import time

import pytest

import asyncray as ray
from asyncray import exceptions as exc
from asyncray._private.runtime import current_client

pytestmark = pytest.mark.usefixtures("shared_cluster")


@ray.remote
def g(x, wait_for=None):
    return ray.get(wait_for[0]) if wait_for is not None else x


def test_task_waiting_on_a_sibling_never_deadlocks_behind_pipelining():
    ray.get([g.remote(i) for i in range(300)])  # short tasks: pipelining is on
    for _ in range(10):
        d = g.remote(1)
        b = g.remote(d)
        a = g.remote(0, [b])  # may be queued on the same worker as b, ahead of it
        assert ray.get(a, timeout=30) == 1


def test_stream_failing_after_consumed_items_ends_with_the_error(tmp_path):
    @ray.remote(max_retries=0)
    def gen(marker):
        for i in range(3):
            yield i
        from helpers import wait_for_file

        wait_for_file(marker)  # the consumer has taken the three items
        os._exit(1)

    marker = tmp_path / "consumed"
    stream = gen.remote(str(marker))
    assert [ray.get(next(stream), timeout=30) for _ in range(3)] == [0, 1, 2]
    marker.write_text("")
    with pytest.raises(exc.WorkerCrashedError):
        ray.get(next(stream), timeout=30)
    with pytest.raises(StopIteration):
        next(stream)


def test_cancelled_stream_after_consumed_items_ends():
    @ray.remote
    def slow():
        for i in range(1000):
            time.sleep(0.01)
            yield i

    stream = slow.remote()
    ray.get(next(stream), timeout=30)
    ray.cancel(stream)
    with pytest.raises((exc.TaskCancelledError, StopIteration)):
        for _ in range(2000):
            ray.get(next(stream), timeout=30)


def test_polling_wait_registers_no_callbacks(tmp_path):
    @ray.remote
    def gated(path):
        from helpers import wait_for_file

        wait_for_file(path)

    ref = gated.remote(str(tmp_path / "gate"))
    for _ in range(1000):
        ray.wait([ref], timeout=0)
    with pytest.raises(exc.GetTimeoutError):
        ray.get(ref, timeout=0.01)
    entry = current_client().objects[ref.binary()]
    assert not entry.callbacks
    (tmp_path / "gate").write_text("")
    ray.get(ref, timeout=30)


def test_ref_pickled_outside_the_runtime_to_a_freed_object_raises():
    from helpers import poll

    client = current_client()
    ref = ray.put("hello")
    oid = ref.binary()
    data = pickle.dumps(ref)
    del ref
    poll(lambda: oid not in client.objects, "the object to be freed", collect=True)
    with pytest.raises(exc.ObjectFreedError):
        ray.get(pickle.loads(data), timeout=10)  # an error, never a hang


def test_max_calls_tasks_run_exactly_once(tmp_path):
    @ray.remote(max_calls=1)
    def once(path, i):
        with open(os.path.join(path, str(i)), "a") as f:
            f.write("x")
        return i

    assert ray.get([once.remote(str(tmp_path), i) for i in range(60)], timeout=120) == list(range(60))
    assert all(open(tmp_path / str(i)).read() == "x" for i in range(60))
