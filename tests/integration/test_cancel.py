"""ray.cancel on pending, running (interrupted or killed) and finished tasks."""
from __future__ import annotations

import os
import time

import pytest

import asyncray as ray
from asyncray.exceptions import TaskCancelledError

pytestmark = pytest.mark.usefixtures("shared_cluster")


@ray.remote
def sleeper(seconds, marker=None):
    if marker:
        open(marker, "w").close()
    time.sleep(seconds)
    return "done"


def _wait_file(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_cancel_pending_task_never_runs(tmp_path):
    blockers = [sleeper.remote(60, str(tmp_path / f"b{i}")) for i in range(2)]
    for i in range(2):
        _wait_file(tmp_path / f"b{i}")
    marker = tmp_path / "ran"
    pending = sleeper.remote(0, str(marker))
    ray.cancel(pending)
    with pytest.raises(TaskCancelledError):
        ray.get(pending, timeout=10)
    for b in blockers:
        ray.cancel(b)
    for b in blockers:
        with pytest.raises(TaskCancelledError):
            ray.get(b, timeout=10)
    assert ray.get(sleeper.remote(0)) == "done"
    assert not marker.exists()


def test_cancel_running_task_interrupts_it(tmp_path):
    marker = tmp_path / "started"
    ref = sleeper.remote(60, str(marker))
    _wait_file(marker)
    t0 = time.monotonic()
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=10)
    assert time.monotonic() - t0 < 5
    assert ray.get(sleeper.remote(0), timeout=10) == "done"


def test_force_cancel_kills_worker_and_pool_replaces_it(tmp_path):
    @ray.remote
    def stuck(marker):
        open(marker, "w").close()
        while True:
            pass

    marker = tmp_path / "started"
    ref = stuck.remote(str(marker))
    _wait_file(marker)
    ray.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=10)
    assert ray.get(sleeper.remote(0), timeout=30) == "done"


def test_cancel_finished_task_does_nothing():
    ref = sleeper.remote(0)
    assert ray.get(ref) == "done"
    ray.cancel(ref)
    assert ray.get(ref) == "done"


@ray.remote
def child_task(marker_dir):
    open(os.path.join(marker_dir, "child"), "w").close()
    try:
        time.sleep(60)
    finally:
        open(os.path.join(marker_dir, "child-stopped"), "w").close()


def test_recursive_cancel_reaches_children(tmp_path):
    @ray.remote
    def parent(marker_dir):
        return ray.get(child_task.remote(marker_dir))

    ref = parent.remote(str(tmp_path))
    _wait_file(tmp_path / "child")
    ray.cancel(ref, recursive=True)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=10)
    _wait_file(tmp_path / "child-stopped", timeout=10)
    assert ray.get([sleeper.remote(0), sleeper.remote(0)], timeout=30) == ["done", "done"]


def test_cancel_rejects_non_ref():
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.cancel("not a ref")
