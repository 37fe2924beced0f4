"""Unit tests for the cluster-wide scheduling logic: node choice per strategy, and placement
group bundle placement, against simulated nodes. Pure logic: no processes, no sockets."""
from __future__ import annotations

import collections

import pytest

from asyncray._private.node.resources import to_units
from asyncray._private.scheduling import bundles as b
from asyncray._private.scheduling.cluster import DEFAULT, SPREAD, ClusterView, NodeAffinity


def nid(i: int) -> bytes:
    return i.to_bytes(28, "big")


def cluster(*totals: dict, seed: int = 0) -> ClusterView:
    view = ClusterView(seed=seed)
    for i, total in enumerate(totals):
        view.add_node(nid(i), to_units(total))
    return view


CPU1 = to_units({"CPU": 1})


# ============================================================================ DEFAULT (hybrid)
def test_local_node_preferred_below_threshold():
    view = cluster({"CPU": 4}, {"CPU": 4}, {"CPU": 4})
    for _ in range(2):  # 2 of 4 CPUs: utilisation 50 % is not below the threshold any more
        d = view.pick(CPU1, DEFAULT, local=nid(1))
        assert d.node_id == nid(1) and d.available
        view.acquire(d.node_id, CPU1)
    d = view.pick(CPU1, DEFAULT, local=nid(1))
    assert d.node_id != nid(1), "past the threshold the least-loaded node wins"
    assert d.available


def test_hybrid_spreads_once_every_node_is_past_the_threshold():
    view = cluster(*[{"CPU": 4}] * 4)
    placed = collections.Counter()
    for _ in range(16):
        d = view.pick(CPU1, DEFAULT, local=nid(0))
        assert d.available
        view.acquire(d.node_id, CPU1)
        placed[d.node_id] += 1
    assert placed == {nid(i): 4 for i in range(4)}, "every CPU of every node is used once"
    d = view.pick(CPU1, DEFAULT, local=nid(0))
    assert d.node_id is not None and not d.available, "all busy: queue on a feasible node"


def test_hybrid_is_deterministic_for_a_seed():
    def run(seed: int) -> list:
        view = cluster(*[{"CPU": 2}] * 10, seed=seed)
        for i in range(10):
            view.acquire(nid(i), CPU1)  # every node at 50 %: no local preference
        return [view.pick(CPU1, DEFAULT).node_id for _ in range(20)]

    assert run(7) == run(7)
    assert len(set(run(7))) > 1, "a random pick among the top k, not always the first"


def test_hybrid_prefers_least_loaded_among_busy_nodes():
    view = cluster(*[{"CPU": 10}] * 10)  # top k = max(1, 20 % of 10) = 2
    for i in range(10):
        view.acquire(nid(i), to_units({"CPU": 8 if i in (3, 7) else 9}))
    picks = {view.pick(CPU1, DEFAULT).node_id for _ in range(50)}
    assert picks == {nid(3), nid(7)}


def test_hybrid_infeasible_and_feasible_later():
    view = cluster({"CPU": 2})
    d = view.pick(to_units({"CPU": 4}), DEFAULT)
    assert d.node_id is None and d.infeasible
    view.add_node(nid(9), to_units({"CPU": 8}))
    d = view.pick(to_units({"CPU": 4}), DEFAULT)
    assert d.node_id == nid(9) and d.available


def test_custom_resource_only_on_the_nodes_that_have_it():
    view = cluster({"CPU": 2}, {"CPU": 2, "foo": 1}, {"CPU": 2})
    need = to_units({"CPU": 1, "foo": 0.5})
    assert view.pick(need, DEFAULT, local=nid(0)).node_id == nid(1)
    view.acquire(nid(1), need)
    view.acquire(nid(1), need)
    d = view.pick(need, DEFAULT, local=nid(0))
    assert d.node_id == nid(1) and not d.available
    assert view.pick(to_units({"bar": 1}), DEFAULT).infeasible


def test_non_gpu_work_avoids_gpu_nodes():
    view = cluster({"CPU": 4, "GPU": 1}, {"CPU": 4})
    assert view.pick(CPU1, DEFAULT, local=nid(0)).node_id == nid(1)
    assert view.pick(to_units({"CPU": 1, "GPU": 1}), DEFAULT, local=nid(1)).node_id == nid(0)
    view.acquire(nid(1), to_units({"CPU": 4}))
    assert view.pick(CPU1, DEFAULT, local=nid(1)).node_id == nid(0), "the GPU node when nothing else fits"


def test_removed_node_is_never_chosen():
    view = cluster({"CPU": 2}, {"CPU": 2})
    view.remove_node(nid(0))
    assert {view.pick(CPU1, DEFAULT, local=nid(0)).node_id for _ in range(10)} == {nid(1)}
    view.remove_node(nid(1))
    assert view.pick(CPU1, DEFAULT).infeasible


def test_release_and_set_free_rescore():
    view = cluster({"CPU": 2}, {"CPU": 2})
    view.acquire(nid(0), to_units({"CPU": 2}))
    assert view.nodes[nid(0)].score == 1.0
    view.release(nid(0), to_units({"CPU": 2}))
    assert view.nodes[nid(0)].score == 0.0
    view.set_free(nid(1), to_units({"CPU": 0}))
    assert view.nodes[nid(1)].score == 1.0
    assert view._order == sorted(view._order)


# ============================================================================ SPREAD
def test_spread_round_robins_over_nodes():
    view = cluster(*[{"CPU": 8}] * 3)
    picks = [view.pick(CPU1, SPREAD).node_id for _ in range(6)]
    assert picks == [nid(0), nid(1), nid(2)] * 2


def test_spread_skips_busy_and_unfit_nodes():
    view = cluster({"CPU": 1}, {"CPU": 1, "foo": 1}, {"CPU": 1})
    view.acquire(nid(0), CPU1)
    assert view.pick(CPU1, SPREAD).node_id == nid(1)
    assert view.pick(to_units({"foo": 1}), SPREAD).node_id == nid(1)
    for i in range(3):
        view.set_free(nid(i), {})
    d = view.pick(CPU1, SPREAD)
    assert d.node_id is not None and not d.available
    assert view.pick(to_units({"CPU": 5}), SPREAD).infeasible


# ============================================================================ node affinity
def test_hard_affinity_goes_there_even_when_busy():
    view = cluster({"CPU": 1}, {"CPU": 1})
    view.acquire(nid(1), CPU1)
    d = view.pick(CPU1, NodeAffinity(nid(1), soft=False), local=nid(0))
    assert d.node_id == nid(1) and not d.available


def test_hard_affinity_to_unknown_or_unfit_node_is_unschedulable():
    view = cluster({"CPU": 1})
    d = view.pick(CPU1, NodeAffinity(nid(5), soft=False))
    assert d.node_id is None and "dead or unknown" in d.unschedulable and nid(5).hex() in d.unschedulable
    d = view.pick(to_units({"CPU": 2}), NodeAffinity(nid(0), soft=False))
    assert d.node_id is None and "does not have the resources" in d.unschedulable


def test_soft_affinity_falls_back():
    view = cluster({"CPU": 1}, {"CPU": 1})
    assert view.pick(CPU1, NodeAffinity(nid(7), soft=True), local=nid(0)).node_id == nid(0)
    view.acquire(nid(1), CPU1)
    d = view.pick(CPU1, NodeAffinity(nid(1), soft=True))
    assert d.node_id == nid(1) and not d.available, "soft stays on a busy node unless told to spill"
    d = view.pick(CPU1, NodeAffinity(nid(1), soft=True, spill_on_unavailable=True), local=nid(0))
    assert d.node_id == nid(0)


def test_unknown_strategy_is_an_error():
    with pytest.raises(ValueError, match="unknown scheduling strategy"):
        cluster({"CPU": 1}).pick(CPU1, "RANDOMLY")


# ============================================================================ scale
def _big_cluster(n: int) -> ClusterView:
    view = ClusterView(seed=1)
    for i in range(n):
        view.add_node(nid(i), to_units({"CPU": 16, "memory": 64e9, **({"foo": 1} if i % 100 == 0 else {})}))
    for i in range(n):  # busy: past the spread threshold, so no local shortcut
        view.acquire(nid(i), to_units({"CPU": 8 + i % 8}))
    return view


def test_decision_cost_stays_flat_with_node_count():
    """Not a speed target (bench/ has that): a guard that a decision does not scan every node."""
    small, large = _big_cluster(100), _big_cluster(3000)

    def cost(view: ClusterView) -> int:
        calls = 0
        import asyncray._private.scheduling.cluster as c
        real = c.fits

        def counting(have, need):
            nonlocal calls
            calls += 1
            return real(have, need)

        c.fits = counting
        try:
            for _ in range(50):
                view.pick(CPU1, DEFAULT, local=nid(5))
                view.pick(to_units({"foo": 1}), DEFAULT)
        finally:
            c.fits = real
        return calls

    assert cost(large) <= 3 * cost(small) + 50


# ============================================================================ bundles
def bundles(*shapes: dict) -> list:
    return [to_units(s) for s in shapes]


def test_strict_pack_one_node_or_nothing():
    view = cluster({"CPU": 2}, {"CPU": 4})
    assert b.place(view, bundles({"CPU": 2}, {"CPU": 2}), b.STRICT_PACK) == [nid(1), nid(1)]
    assert b.place(view, bundles({"CPU": 3}, {"CPU": 3}), b.STRICT_PACK) is None


def test_pack_fills_a_node_then_overflows():
    view = cluster({"CPU": 2}, {"CPU": 2})
    assert b.place(view, bundles({"CPU": 1}, {"CPU": 1}), b.PACK) == [nid(0), nid(0)]
    placed = b.place(view, bundles({"CPU": 1}, {"CPU": 1}, {"CPU": 1}), b.PACK)
    assert collections.Counter(placed) == {nid(0): 2, nid(1): 1}
    assert b.place(view, bundles(*[{"CPU": 1}] * 5), b.PACK) is None


def test_spread_prefers_distinct_nodes_but_may_share():
    view = cluster({"CPU": 4}, {"CPU": 4})
    assert sorted(b.place(view, bundles({"CPU": 1}, {"CPU": 1}), b.SPREAD)) == [nid(0), nid(1)]
    placed = b.place(view, bundles(*[{"CPU": 1}] * 3), b.SPREAD)
    assert set(placed) == {nid(0), nid(1)}


def test_strict_spread_needs_as_many_nodes_as_bundles():
    view = cluster({"CPU": 4}, {"CPU": 4})
    assert sorted(b.place(view, bundles({"CPU": 1}, {"CPU": 1}), b.STRICT_SPREAD)) == [nid(0), nid(1)]
    assert b.place(view, bundles(*[{"CPU": 1}] * 3), b.STRICT_SPREAD) is None
    assert not b.feasible(view, bundles(*[{"CPU": 1}] * 3), b.STRICT_SPREAD)
    view.add_node(nid(2), to_units({"CPU": 1}))
    assert len(set(b.place(view, bundles(*[{"CPU": 1}] * 3), b.STRICT_SPREAD))) == 3


def test_placement_uses_free_not_total():
    view = cluster({"CPU": 2})
    view.acquire(nid(0), CPU1)
    assert b.place(view, bundles({"CPU": 2}), b.PACK) is None
    assert b.feasible(view, bundles({"CPU": 2}), b.PACK)


def test_reserved_bundle_resources_and_task_shape():
    pg = "ab" * 9
    res = b.reserved_resources(pg, 1, to_units({"CPU": 2, "GPU": 1}))
    assert res == {f"CPU_group_1_{pg}": 20_000, f"CPU_group_{pg}": 20_000, f"GPU_group_1_{pg}": 10_000,
                   f"GPU_group_{pg}": 10_000, f"bundle_group_1_{pg}": 10_000_000, f"bundle_group_{pg}": 10_000_000}
    assert b.shape_in_bundle(CPU1, pg, -1) == {f"CPU_group_{pg}": 10_000, f"bundle_group_{pg}": 10}
    # A named bundle also takes from the group-wide resources, so "any bundle" work cannot
    # use what bundle 0's work holds.
    assert b.shape_in_bundle({}, pg, 0) == {f"bundle_group_0_{pg}": 10, f"bundle_group_{pg}": 10}
    assert b.shape_in_bundle(CPU1, pg, 1) == {f"CPU_group_{pg}": 10_000, f"CPU_group_1_{pg}": 10_000,
                                              f"bundle_group_{pg}": 10, f"bundle_group_1_{pg}": 10}
    assert b.group_of(f"CPU_group_0_{pg}") == pg and b.group_of(f"bundle_group_{pg}") == pg
    assert b.group_of("CPU") is None


def test_work_in_a_bundle_lands_on_its_node():
    view = cluster({"CPU": 4}, {"CPU": 4})
    pg = "cd" * 9
    placed = b.place(view, bundles({"CPU": 2}, {"CPU": 2}), b.STRICT_SPREAD)
    for i, node in enumerate(placed):
        n = view.nodes[node]
        reserved = b.reserved_resources(pg, i, to_units({"CPU": 2}))
        total = {**n.total, **reserved}
        total["CPU"] -= 20_000
        view.set_total(node, total, dict(total))
    assert view.pick(b.shape_in_bundle(CPU1, pg, 1), DEFAULT, local=placed[0]).node_id == placed[1]
    assert view.pick(b.shape_in_bundle({}, pg, 0), DEFAULT, local=placed[1]).node_id == placed[0]


def test_lost_bundles_are_placed_again_under_the_strategy():
    view = cluster({"CPU": 4}, {"CPU": 4}, {"CPU": 4})
    two = bundles({"CPU": 1}, {"CPU": 1})
    # Bundle 1 was on a node that died: STRICT_SPREAD keeps it off bundle 0's node.
    again = b.place(view, two, b.STRICT_SPREAD, [nid(0), None])
    assert again[0] == nid(0) and again[1] in (nid(1), nid(2))
    # STRICT_PACK must rejoin the survivors' node, or wait.
    assert b.place(view, two, b.STRICT_PACK, [nid(2), None]) == [nid(2), nid(2)]
    view.acquire(nid(2), to_units({"CPU": 4}))
    assert b.place(view, two, b.STRICT_PACK, [nid(2), None]) is None
    # PACK prefers the node the group already uses.
    assert b.place(view, two, b.PACK, [nid(1), None]) == [nid(1), nid(1)]
    # Only the lost bundle counts against free resources: the kept one is reserved already.
    view.acquire(nid(1), to_units({"CPU": 3}))
    assert b.place(view, two, b.PACK, [nid(1), None]) == [nid(1), nid(1)]
