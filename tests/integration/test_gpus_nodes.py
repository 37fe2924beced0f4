"""GPUs are scheduled like any resource; tasks see their ids (issue 9, first part); ray.nodes()."""
from __future__ import annotations

import os

import pytest

import asyncray as ray


@pytest.fixture
def gpu_cluster():
    ray.init(num_cpus=2, num_gpus=2)  # no real GPUs needed, as Ray allows
    yield
    ray.shutdown()


def test_gpu_tasks_get_their_ids(gpu_cluster):
    @ray.remote(num_gpus=1)
    def which():
        import time

        time.sleep(0.2)
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), \
            ray.get_runtime_context().get_assigned_resources()

    a, b = ray.get([which.remote(), which.remote()])
    assert sorted(a[0] + b[0]) == [0, 1]  # two at once: different GPUs
    assert a[1] == str(a[0][0]) and a[2]["GPU"] == 1.0

    @ray.remote
    def cpu_only():
        return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    assert ray.get(cpu_only.remote()) == ([], None)
    assert ray.get_gpu_ids() == []


def test_gpu_actor_gets_its_id(gpu_cluster):
    @ray.remote(num_gpus=1)
    class OnGpu:
        def ids(self):
            return ray.get_gpu_ids(), ray.get_runtime_context().get_assigned_resources()

    ids, assigned = ray.get(OnGpu.remote().ids.remote())
    assert len(ids) == 1 and assigned.get("GPU") == 1.0


def test_nodes_have_rays_keys(gpu_cluster):
    (node,) = ray.nodes()
    assert node["Alive"] and len(node["NodeID"]) == 56
    assert node["NodeID"] == ray.get_runtime_context().get_node_id()
    assert node["Resources"]["CPU"] == 2 and node["Resources"]["GPU"] == 2
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert ray.cluster_resources()["node:127.0.0.1"] == 1.0


def test_infeasible_task_warns_once_and_cancel_ends_it(caplog):
    import logging

    with ray.init(num_cpus=1):
        @ray.remote(num_cpus=4)
        def too_big():
            return 1

        with caplog.at_level(logging.WARNING, logger="asyncray"):
            ref = too_big.remote()
            ready, _ = ray.wait([ref], timeout=0.5)
            assert not ready  # pending, not failed
            from helpers import poll

            poll(lambda: any("too_big" in r.getMessage() and "CPU" in r.getMessage() for r in caplog.records),
                 "the infeasible warning", timeout=10)
        ray.cancel(ref)
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(ref, timeout=10)
