"""A second driver joins a running local cluster by its address, as in Ray."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import asyncray as ray
from helpers import poll

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SECOND_DRIVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import asyncray as ray
    ray.init(address=sys.argv[1] if len(sys.argv) > 1 else None)
    @ray.remote
    def double(x):
        return 2 * x
    big = ray.put(np.ones(200_000))
    print(ray.get(double.remote(21)), float(ray.get(big).sum()), ray.get_runtime_context().get_node_id())
    ray.shutdown()
""")


def _run(args, env=None, timeout=60):
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, "-c", SECOND_DRIVER, *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture
def first_driver():
    ctx = ray.init(num_cpus=2)
    yield ctx
    ray.shutdown()


def test_second_driver_joins_by_address(first_driver):
    out = _run([first_driver.address_info["address"]])
    assert out.returncode == 0, out.stderr
    answer, total, node = out.stdout.split()
    assert (answer, total) == ("42", "200000.0")
    assert node == first_driver.address_info["node_id"]
    # The first driver's cluster is untouched and its resources are all free again.

    @ray.remote
    def one():
        return 1

    assert ray.get(one.remote()) == 1


def test_second_driver_joins_through_environment(first_driver):
    out = _run([], env={"ASYNCRAY_ADDRESS": first_driver.address_info["address"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "42"


def test_auto_without_cluster_raises_connection_error():
    code = "import asyncray as ray\ntry:\n    ray.init(address='auto')\nexcept ConnectionError as e:\n    print('ok', e)"
    env = {k: v for k, v in os.environ.items() if k != "ASYNCRAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, PYTHONPATH=REPO), timeout=60)
    assert out.stdout.startswith("ok"), out.stderr


def test_unreachable_address_raises_connection_error():
    code = ("import asyncray as ray\ntry:\n    ray.init(address='127.0.0.1:9')\nexcept ConnectionError as e:\n"
            "    print('ok', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO, ASYNCRAY_CONNECT_TIMEOUT_S="1"), timeout=60)
    assert out.stdout.startswith("ok"), out.stderr


def test_joining_rejects_resource_arguments():
    with pytest.raises(ValueError, match="num_cpus"):
        ray.init(address="127.0.0.1:9", num_cpus=2)
    assert not ray.is_initialized()


CREATOR = textwrap.dedent("""
    import sys
    import asyncray as ray
    ray.init(address=sys.argv[1], namespace="shared")
    @ray.remote
    class Keeper:
        def __init__(self, v):
            self.v = v
        def get(self):
            return self.v
    keep = Keeper.options(name="keeper", lifetime="detached").remote(41)
    owned = Keeper.options(name="owned-by-driver-2").remote(1)
    print(ray.get(keep.get.remote()) + ray.get(owned.get.remote()))
    ray.shutdown()
""")


def test_detached_actor_outlives_the_driver_that_made_it(first_driver):
    out = subprocess.run([sys.executable, "-c", CREATOR, first_driver.address_info["address"]],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert out.stdout.strip() == "42", out.stderr
    keeper = ray.get_actor("keeper", namespace="shared")
    assert ray.get(keeper.get.remote()) == 41
    # The non-detached one went with its owner, the second driver.
    from helpers import poll

    poll(lambda: "owned-by-driver-2" not in [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)],
         "the second driver's own actor to die with it")
    ray.kill(keeper)


GROUP_DRIVER = textwrap.dedent("""
    import sys
    import asyncray as ray
    from asyncray.util import placement_group
    ray.init(address=sys.argv[1], namespace="shared")
    mine = placement_group([{"CPU": 1}], name="mine")
    kept = placement_group([{"CPU": 1}], name="kept", lifetime="detached")
    ray.get([mine.ready(), kept.ready()])
    print("ok")
    ray.shutdown() if sys.argv[2] == "shutdown" else None
""")


@pytest.mark.parametrize("ending", ["shutdown", "exit"])
def test_placement_groups_fate_share_with_their_job(ending):
    from asyncray.util import get_placement_group, placement_group_table, remove_placement_group

    ctx = ray.init(num_cpus=2, namespace="shared")
    try:
        out = subprocess.run([sys.executable, "-c", GROUP_DRIVER, ctx.address_info["address"], ending],
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
        assert out.stdout.strip() == "ok", out.stderr
        # The head hears of the job's end (or its driver's death) on its own: wait for it.
        poll(lambda: not any(g["name"] == "mine" and g["state"] != "REMOVED" for g in placement_group_table().values())
             and ray.available_resources().get("CPU") == 1.0, "the job's placement group to go with it")
        with pytest.raises(ValueError, match="Failed to look up placement group with name: mine"):
            get_placement_group("mine")
        kept = get_placement_group("kept")  # detached: outlives the job that made it
        assert placement_group_table(kept)["state"] == "CREATED"
        remove_placement_group(kept)
        poll(lambda: ray.available_resources().get("CPU") == 2.0, "every CPU back")
    finally:
        ray.shutdown()
