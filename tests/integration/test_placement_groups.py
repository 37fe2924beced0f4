"""Placement groups and scheduling strategies on a real local cluster (issue 9).

One node here; strategies that need several nodes are covered by the unit tests of the
scheduling logic (tests/unit/test_cluster_scheduler.py)."""
from __future__ import annotations

import os

import pytest

import asyncray as ray
from asyncray.exceptions import (ActorDiedError, ActorUnschedulableError, GetTimeoutError, RayActorError,
                                 TaskPlacementGroupRemoved, TaskUnschedulableError)
from asyncray.util import (get_current_placement_group, get_placement_group, placement_group, placement_group_table,
                           remove_placement_group)
from asyncray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
from helpers import CountingGate, alive, poll


@pytest.fixture(scope="module")
def four_cpus():
    ray.init(num_cpus=4, resources={"foo": 2})
    yield
    ray.shutdown()


def in_pg(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index,
                                            placement_group_capture_child_tasks=capture)


@ray.remote(num_cpus=1)
def current_pg():
    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


# ============================================================================ lifecycle
def test_create_ready_remove(four_cpus):
    pg = placement_group([{"CPU": 1}, {"CPU": 1, "foo": 1}], strategy="PACK", name="lifecycle")
    assert pg.bundle_count == 2 and pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0, "foo": 1.0}]
    assert ray.get(pg.ready(), timeout=30) == pg
    assert pg.wait(10) is True
    info = placement_group_table(pg)
    assert info["state"] == "CREATED" and info["strategy"] == "PACK" and info["name"] == "lifecycle"
    assert info["placement_group_id"] == pg.id.hex() and len(pg.id.hex()) == 36
    assert info["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 1.0, "foo": 1.0}}
    assert set(info["bundles_to_node_id"].values()) == {ray.get_runtime_context().get_node_id()}
    avail = ray.available_resources()
    assert avail["CPU"] == 2.0 and avail["foo"] == 1.0, "reserved resources leave available_resources()"
    assert avail[f"CPU_group_{pg.id.hex()}"] == 2.0 and avail[f"CPU_group_1_{pg.id.hex()}"] == 1.0
    assert get_placement_group("lifecycle") == pg
    assert pg.id.hex() in placement_group_table()

    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED", "a removed group stays listed"
    avail = ray.available_resources()
    assert avail["CPU"] == 4.0 and avail["foo"] == 2.0
    assert not any("_group_" in k for k in avail)
    with pytest.raises(ValueError, match="Failed to look up placement group with name: lifecycle"):
        get_placement_group("lifecycle")


@pytest.mark.asyncio
async def test_ready_is_awaitable(four_cpus):
    pg = placement_group([{"CPU": 1}])
    assert await pg.ready() == pg
    remove_placement_group(pg)


def test_pending_group_waits_and_its_ready_fails_on_remove(four_cpus):
    # STRICT_SPREAD needs one node per bundle: with one node it stays pending.
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(0.3) is False
    assert placement_group_table(pg)["state"] == "PENDING"
    ready = pg.ready()
    waiting = current_pg.options(scheduling_strategy=in_pg(pg, 0)).remote()
    # Nothing is reserved for a pending group (leases of earlier tests may take a moment to go).
    poll(lambda: ray.available_resources().get("CPU") == 4.0, "every CPU free: nothing reserved")
    remove_placement_group(pg)
    with pytest.raises(ValueError, match="was removed"):
        ray.get(ready, timeout=30)
    with pytest.raises(TaskPlacementGroupRemoved):
        ray.get(waiting, timeout=30)


def test_group_waits_for_resources_then_is_created(four_cpus):
    hold = placement_group([{"CPU": 3}])
    ray.get(hold.ready(), timeout=30)
    pg = placement_group([{"CPU": 2}])
    assert pg.wait(0.3) is False, "only 1 CPU is free"
    remove_placement_group(hold)
    assert ray.get(pg.ready(), timeout=30) == pg
    remove_placement_group(pg)


# ============================================================================ work in a group
def test_tasks_run_in_their_bundle(four_cpus):
    pg = placement_group([{"CPU": 1}, {"CPU": 2}])
    ray.get(pg.ready(), timeout=30)
    assert ray.get([current_pg.options(scheduling_strategy=in_pg(pg, i)).remote() for i in (-1, 0, 1)],
                   timeout=30) == [pg.id.hex()] * 3
    assert ray.get(current_pg.remote(), timeout=30) is None
    assert get_current_placement_group() is None  # a driver is in no group
    # The deprecated options still work, with Ray's warning.
    with pytest.warns(DeprecationWarning, match="placement_group parameter is deprecated"):
        old_style = current_pg.options(placement_group=pg, placement_group_bundle_index=1).remote()
    assert ray.get(old_style, timeout=30) == pg.id.hex()
    remove_placement_group(pg)


def test_bundle_bounds_what_runs_in_it(four_cpus):
    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=30)
    poll(lambda: ray.available_resources().get("CPU") == 3.0, "the node's other CPUs free")
    gate = CountingGate.remote()

    @ray.remote(num_cpus=1)
    def held(gate):
        ray.get(gate.wait.remote())
        return ray.available_resources()

    first = held.options(scheduling_strategy=in_pg(pg, 0)).remote(gate)
    second = held.options(scheduling_strategy=in_pg(pg, -1)).remote(gate)  # "any bundle": the same one
    ray.get(gate.started.remote(1), timeout=30)  # one is running; the bundle has no CPU left
    key = f"CPU_group_0_{pg.id.hex()}"
    assert ray.available_resources().get(key, 0) == 0
    ready, _ = ray.wait([second], timeout=0.3)
    assert not ready
    ray.get(gate.open.remote())
    results = ray.get([first, second], timeout=30)
    assert all(r["CPU"] == 3.0 for r in results), "work in the bundle never took the node's own CPUs"
    remove_placement_group(pg)


def test_child_tasks_captured(four_cpus):
    pg = placement_group([{"CPU": 2}])
    ray.get(pg.ready(), timeout=30)

    @ray.remote(num_cpus=1)
    def parent():
        child = current_pg.remote()
        opted_out = current_pg.options(scheduling_strategy="DEFAULT").remote()
        return ray.get(child), ray.get(opted_out), get_current_placement_group().id.hex()

    captured = ray.get(parent.options(scheduling_strategy=in_pg(pg, capture=True)).remote(), timeout=30)
    assert captured == (pg.id.hex(), None, pg.id.hex())
    not_captured = ray.get(parent.options(scheduling_strategy=in_pg(pg)).remote(), timeout=30)
    assert not_captured == (None, None, pg.id.hex())
    remove_placement_group(pg)


def test_actor_in_group_dies_with_it(four_cpus):
    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=30)

    @ray.remote(num_cpus=1)
    class Member:
        def group(self):
            return get_current_placement_group().id.hex()

    member = Member.options(scheduling_strategy=in_pg(pg, 0)).remote()
    assert ray.get(member.group.remote(), timeout=30) == pg.id.hex()
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError, match="placement group was removed") as info:
        ray.get(member.group.remote(), timeout=30)
    assert isinstance(info.value, RayActorError)
    poll(lambda: ray.available_resources().get("CPU") == 4.0, "the group's CPU back")


def test_running_task_in_removed_group_fails(four_cpus):
    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=30)
    gate = CountingGate.remote()

    @ray.remote(num_cpus=1, max_retries=1)
    def blocked(gate):
        ray.get(gate.wait.remote())

    ref = blocked.options(scheduling_strategy=in_pg(pg, 0)).remote(gate)
    ray.get(gate.started.remote(1), timeout=30)
    remove_placement_group(pg)
    with pytest.raises(TaskPlacementGroupRemoved):
        ray.get(ref, timeout=30)


# ============================================================================ bad input
@pytest.mark.parametrize("bundles, strategy, match", [
    ([], "PACK", "Bundles must be a non-empty list"),
    ({"CPU": 1}, "PACK", "Placement group bundles must be a list"),
    ([{}], "PACK", "Bundles cannot be an empty dictionary"),
    ([{"CPU": 0}], "PACK", "resources with only 0 values"),
    ([{"CPU": -1}], "PACK", "cannot be negative"),
    ([{"CPU": "1"}], "PACK", "resource dictionaries"),
    ([{"CPU": 1}], "TIGHT", "Invalid placement group strategy TIGHT"),
])
def test_bad_placement_group_arguments(four_cpus, bundles, strategy, match):
    with pytest.raises(ValueError, match=match):
        placement_group(bundles, strategy=strategy)


def test_bad_lifetime_and_duplicate_name(four_cpus):
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    pg = placement_group([{"CPU": 1}], name="twice")
    with pytest.raises(ValueError, match="already taken"):
        placement_group([{"CPU": 1}], name="twice")
    remove_placement_group(pg)


def test_bad_bundle_index_shape_and_removed_group(four_cpus):
    pg = placement_group([{"CPU": 1}])
    ray.get(pg.ready(), timeout=30)
    with pytest.raises(ValueError, match="bundle index 3 is invalid"):
        current_pg.options(scheduling_strategy=in_pg(pg, 3)).remote()
    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        current_pg.options(num_cpus=2, scheduling_strategy=in_pg(pg)).remote()
    remove_placement_group(pg)
    with pytest.raises(ValueError, match=f"{pg.id.hex()} was removed"):
        current_pg.options(scheduling_strategy=in_pg(pg)).remote()


# ============================================================================ strategies
def test_node_affinity(four_cpus):
    me = ray.get_runtime_context().get_node_id()

    @ray.remote
    def where():
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(me, soft=False)).remote()) == me
    unknown = "ab" * 28
    assert ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(unknown, soft=True)).remote(),
                   timeout=30) == me
    with pytest.raises(TaskUnschedulableError, match=f"node {unknown} is dead or unknown"):
        ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(unknown, soft=False)).remote(),
                timeout=30)
    with pytest.raises(ValueError, match="56-character hex"):
        where.options(scheduling_strategy=NodeAffinitySchedulingStrategy("nope", soft=False)).remote()

    @ray.remote
    class Pinned:
        def ping(self):
            return "pong"

    stuck = Pinned.options(scheduling_strategy=NodeAffinitySchedulingStrategy(unknown, soft=False)).remote()
    with pytest.raises(ActorUnschedulableError, match="dead or unknown"):
        ray.get(stuck.ping.remote(), timeout=30)
    ok = Pinned.options(scheduling_strategy=NodeAffinitySchedulingStrategy(me, soft=False)).remote()
    assert ray.get(ok.ping.remote(), timeout=30) == "pong"


def test_spread_and_default_strings(four_cpus):
    assert ray.get([current_pg.options(scheduling_strategy=s).remote() for s in ("SPREAD", "DEFAULT")],
                   timeout=30) == [None, None]


def test_get_timeout_on_pending_group(four_cpus):
    pg = placement_group([{"CPU": 100}])
    with pytest.raises(GetTimeoutError):
        ray.get(pg.ready(), timeout=0.2)
    remove_placement_group(pg)


def test_label_selector_is_refused_not_ignored(four_cpus):
    with pytest.raises(NotImplementedError, match="label_selector.*node labels"):
        current_pg.options(label_selector={"zone": "us"}).remote()


def test_groups_share_fate_with_their_job_and_creating_actor(four_cpus):
    """As in Ray: a group lives while its job or its creating actor does; a detached actor's
    job does not count."""
    @ray.remote(num_cpus=0, max_calls=1)  # the worker exits after the task
    def make(name):
        pg = placement_group([{"CPU": 1}], name=name)
        ray.get(pg.ready())
        return os.getpid()

    pid = ray.get(make.remote("from-a-task"), timeout=30)
    poll(lambda: not alive(pid), "the task's worker to exit")
    assert placement_group_table(get_placement_group("from-a-task"))["state"] == "CREATED", \
        "a group made in a task belongs to the job, not to the task's worker"
    remove_placement_group(get_placement_group("from-a-task"))

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self, name):
            pg = placement_group([{"CPU": 1}], name=name)
            ray.get(pg.ready())

    maker = Maker.remote()
    ray.get(maker.make.remote("from-an-actor"), timeout=30)
    made = get_placement_group("from-an-actor")
    ray.kill(maker)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(maker.make.remote("again"), timeout=30)
    assert placement_group_table(made)["state"] == "CREATED", "its job is alive: the group stays"
    remove_placement_group(made)

    detached = Maker.options(name="detached-maker", lifetime="detached").remote()
    ray.get(detached.make.remote("from-a-detached-actor"), timeout=30)
    made = get_placement_group("from-a-detached-actor")
    ray.kill(detached)
    poll(lambda: placement_group_table(made)["state"] == "REMOVED", "the detached actor's group to go with it")
