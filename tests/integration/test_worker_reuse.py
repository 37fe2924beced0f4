"""Workers are reused between tasks of one job and runtime_env; an idle worker that owns
objects still in use is never reaped (issue 9)."""
from __future__ import annotations

import os

import numpy as np

import asyncray as ray
from helpers import alive, poll


def test_worker_is_reused_between_tasks(cluster):
    @ray.remote
    def pid():
        return os.getpid()

    pids = {ray.get(pid.remote()) for _ in range(20)}
    assert len(pids) == 1
    env = {"env_vars": {"FLAVOUR": "a"}}
    env_pids = {ray.get(pid.options(runtime_env=env).remote()) for _ in range(5)}
    assert len(env_pids) == 1 and env_pids.isdisjoint(pids), "another runtime_env gets its own worker"


def test_idle_worker_owning_objects_is_kept(monkeypatch):
    monkeypatch.setenv("ASYNCRAY_IDLE_WORKER_TIMEOUT_S", "0.2")
    ray.init(num_cpus=1)
    try:
        @ray.remote
        def make():
            return [ray.put(np.arange(100_000)), ray.put("small")], os.getpid()

        @ray.remote
        def plain():
            return os.getpid()

        refs, owner_pid = ray.get(make.options(runtime_env={"env_vars": {"KIND": "owner"}}).remote())
        idle_pid = ray.get(plain.options(runtime_env={"env_vars": {"KIND": "idle"}}).remote())
        # Idle workers beyond the CPU count are ended oldest first; the owner is older than the
        # other one, so once the other is gone the owner was considered (and kept).
        poll(lambda: not (alive(idle_pid) and alive(owner_pid)), "an idle worker to be reaped")
        assert alive(owner_pid), "the worker owning live objects was reaped"
        assert not alive(idle_pid)
        assert ray.get(refs[0], timeout=30).sum() == np.arange(100_000).sum()
        assert ray.get(refs[1], timeout=30) == "small"
    finally:
        ray.shutdown()
