"""Several node managers on this machine joined to one head (cluster_utils.Cluster), as Ray's
own tests run them: placement across nodes, strategies, placement groups, node loss (issue 9)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import asyncray as ray
from asyncray._private.object_store import segments
from asyncray.cluster_utils import Cluster
from helpers import CountingGate, poll
from asyncray.util import placement_group, placement_group_table, remove_placement_group
from asyncray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy


@pytest.fixture
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2, resources={"foo": 1})
    ray.init(address=cluster.address)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@ray.remote(num_cpus=1)
def where(*_):
    return ray.get_runtime_context().get_node_id()


def test_nodes_and_resources_span_the_cluster(two_nodes):
    cluster, worker = two_nodes
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    assert set(nodes) == {cluster.head_node.node_id, worker.node_id}
    assert all(n["Alive"] for n in nodes.values())
    assert nodes[worker.node_id]["Resources"]["foo"] == 1.0
    total = ray.cluster_resources()
    assert total["CPU"] == 3.0 and total["foo"] == 1.0
    assert ray.available_resources()["CPU"] == 3.0


def test_work_goes_where_its_resources_are(two_nodes):
    cluster, worker = two_nodes
    assert ray.get(where.options(resources={"foo": 1}).remote(), timeout=30) == worker.node_id

    @ray.remote(resources={"foo": 1})
    class OnFoo:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    assert ray.get(OnFoo.remote().node.remote(), timeout=30) == worker.node_id


def test_node_affinity_across_nodes(two_nodes):
    cluster, worker = two_nodes
    for node in (worker, cluster.head_node):
        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        assert ray.get([where.options(scheduling_strategy=strategy).remote() for _ in range(3)],
                       timeout=30) == [node.node_id] * 3


def test_busy_local_node_spills_to_the_other(two_nodes, tmp_path):
    cluster, worker = two_nodes
    # Tasks that hold their CPU until told to go (a file: blocking in ray.get would lend it).
    held = [held_where.remote(str(tmp_path), i) for i in range(3)]
    poll(lambda: len(list(tmp_path.glob("started-*"))) == 3, "3 tasks running at once")  # 1 CPU here, 2 there
    gate = CountingGate.remote()
    # Tasks whose arguments are not ready yet: their lease requests come and go (cancelled
    # while queued elsewhere, granted late); a late grant must go back to the node that made it.
    after = [where.remote(gate.wait.remote()) for _ in range(3)]
    (tmp_path / "go").touch()
    ran_on = ray.get(held, timeout=30)
    assert sorted(ran_on) == sorted([cluster.head_node.node_id] + [worker.node_id] * 2)
    ray.get(gate.open.remote())
    assert len(ray.get(after, timeout=30)) == 3
    poll(lambda: ray.available_resources().get("CPU") == 3.0, "every CPU back")


@ray.remote(num_cpus=1)
def held_where(directory, i):
    import pathlib

    d = pathlib.Path(directory)
    (d / f"started-{i}").touch()
    while not (d / "go").exists():
        time.sleep(0.01)
    return ray.get_runtime_context().get_node_id()


def test_spread_uses_every_node(two_nodes, tmp_path):
    cluster, worker = two_nodes
    refs = [held_where.options(scheduling_strategy="SPREAD").remote(str(tmp_path), i) for i in range(2)]
    poll(lambda: len(list(tmp_path.glob("started-*"))) == 2, "both tasks running")
    (tmp_path / "go").touch()
    assert set(ray.get(refs, timeout=30)) == {cluster.head_node.node_id, worker.node_id}


def test_strict_spread_group_across_nodes(two_nodes):
    cluster, worker = two_nodes
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    ray.get(pg.ready(), timeout=30)
    placed = placement_group_table(pg)["bundles_to_node_id"]
    assert set(placed.values()) == {cluster.head_node.node_id, worker.node_id}
    for index in (0, 1):
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)
        assert ray.get(where.options(scheduling_strategy=strategy).remote(), timeout=30) == placed[index]
    three = placement_group([{"CPU": 0.1}] * 3, strategy="STRICT_SPREAD")
    assert three.wait(0.3) is False, "three bundles, two nodes"
    remove_placement_group(three)
    remove_placement_group(pg)
    poll(lambda: ray.available_resources().get("CPU") == 3.0, "every CPU back")


def test_infeasible_task_runs_when_a_node_that_fits_joins(two_nodes):
    cluster, _worker = two_nodes
    ref = where.options(resources={"bar": 1}).remote()
    ready, _ = ray.wait([ref], timeout=0.3)
    assert not ready
    late = cluster.add_node(num_cpus=1, resources={"bar": 1})
    assert ray.get(ref, timeout=30) == late.node_id


def test_large_results_from_another_node_are_read_and_freed_there(two_nodes):
    cluster, worker = two_nodes

    @ray.remote(resources={"foo": 1})
    def big():
        return np.ones(1_000_000)

    prefix = segments.session_prefix(worker.session)

    def stored_on_worker():
        return [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]

    ref = big.remote()
    assert float(ray.get(ref, timeout=30).sum()) == 1_000_000.0
    assert len(stored_on_worker()) == 1
    del ref
    poll(lambda: not stored_on_worker(), "the value freed in the other node's store")

    @ray.remote(resources={"foo": 1})
    class Maker:  # placed by the head: the driver never leased from that node itself
        def big(self):
            return np.ones(1_000_000)

    maker = Maker.remote()
    ref = maker.big.remote()
    assert float(ray.get(ref, timeout=30).sum()) == 1_000_000.0
    assert len(stored_on_worker()) == 1
    del ref
    poll(lambda: not stored_on_worker(), "the value freed in the other node's store")


def test_removed_node_work_moves(two_nodes):
    cluster, worker = two_nodes
    gate = CountingGate.options(resources={"foo": 0.5}).remote()  # on the node that goes away
    ray.get(gate.started.remote(0), timeout=30)  # alive there (one not started yet would wait to be placed again)

    @ray.remote(num_cpus=1, max_restarts=1)
    class Counter:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    soft = NodeAffinitySchedulingStrategy(worker.node_id, soft=True)
    counter = Counter.options(scheduling_strategy=soft).remote()
    assert ray.get(counter.node.remote(), timeout=30) == worker.node_id
    cluster.remove_node(worker)
    poll(lambda: not all(n["Alive"] for n in ray.nodes()), "the node listed dead")
    assert ray.get(counter.node.remote(), timeout=30) == cluster.head_node.node_id, "restarted on a live node"
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(gate.wait.remote(), timeout=30)
    assert ray.cluster_resources()["CPU"] == 1.0
    gone = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="dead or unknown"):
        ray.get(where.options(scheduling_strategy=gone).remote(), timeout=30)
    soft = NodeAffinitySchedulingStrategy(worker.node_id, soft=True)  # the restarted actor holds the 1 CPU left
    assert ray.get(where.options(num_cpus=0, scheduling_strategy=soft).remote(), timeout=30) == \
        cluster.head_node.node_id


def test_group_on_a_lost_node_is_placed_again(two_nodes):
    cluster, worker = two_nodes
    spare = cluster.add_node(num_cpus=1, resources={"foo": 1})
    pg = placement_group([{"foo": 1, "CPU": 1}], strategy="STRICT_PACK")
    ray.get(pg.ready(), timeout=30)

    @ray.remote(num_cpus=1, resources={"foo": 1}, max_restarts=1)
    class InGroup:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    member = InGroup.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    first = ray.get(member.node.remote(), timeout=30)
    assert placement_group_table(pg)["bundles_to_node_id"][0] == first
    lost = next(n for n in (worker, spare) if n.node_id == first)
    other = spare if lost is worker else worker
    cluster.remove_node(lost)
    poll(lambda: placement_group_table(pg)["state"] == "CREATED"
         and placement_group_table(pg)["bundles_to_node_id"].get(0) == other.node_id, "the bundle placed again")
    assert ray.get(member.node.remote(), timeout=30) == other.node_id, "the actor restarted in the new bundle"
    remove_placement_group(pg)


def test_queued_work_moves_to_a_node_that_joins(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=cluster.address)
    try:
        refs = [held_where.remote(str(tmp_path), i) for i in range(3)]
        poll(lambda: len(list(tmp_path.glob("started-*"))) == 1, "one task running")  # one CPU: the others queue
        late = cluster.add_node(num_cpus=2)
        poll(lambda: len(list(tmp_path.glob("started-*"))) == 3, "all three running")  # they moved to the new node
        (tmp_path / "go").touch()
        assert sorted(ray.get(refs, timeout=30)) == sorted([cluster.head_node.node_id] + [late.node_id] * 2)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_actors_created_together_use_every_node(two_nodes):
    cluster, worker = two_nodes

    @ray.remote(num_cpus=1)
    class Busy:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    actors = [Busy.remote() for _ in range(3)]  # 3 CPUs in all: 1 on the head node, 2 on the other
    placed = ray.get([a.node.remote() for a in actors], timeout=30)
    assert sorted(placed) == sorted([cluster.head_node.node_id] + [worker.node_id] * 2)


def test_objects_owned_on_a_lost_node_fail_instead_of_hanging(two_nodes):
    cluster, worker = two_nodes

    @ray.remote(resources={"foo": 1})
    def make():
        return [ray.put("owned by a worker of the node that goes away")]

    (inner,) = ray.get(make.remote(), timeout=30)
    cluster.remove_node(worker)
    with pytest.raises(ray.exceptions.OwnerDiedError):
        ray.get(inner, timeout=30)


@pytest.mark.timeout(90)
def test_placement_groups_example_runs():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(root / "examples" / "placement_groups.py")], capture_output=True,
                         text=True, env=env, timeout=80)
    assert out.returncode == 0, out.stderr
    assert "CPUs reserved for the group: 3.0" in out.stdout
    assert "its CPUs are back: True" in out.stdout and "the trainer went with its group" in out.stdout
