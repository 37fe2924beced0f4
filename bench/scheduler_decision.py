#!/usr/bin/env python3
"""Scheduling decision cost against simulated nodes: pure logic, no processes, no I/O.

    python bench/scheduler_decision.py [--nodes 1000] [--decisions 20000]

Ray has no public API for this figure (its policy runs in C++ inside the raylet), so it is
reported alone; the issue's target is <= 50 us per decision against 1,000 nodes. Each row is
the median of 5 rounds. The cluster is busy (every node past the 50 % spread threshold, so the
local-node shortcut does not apply) and 1 % of the nodes have a custom resource.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asyncray._private.node.resources import to_units  # noqa: E402
from asyncray._private.scheduling import bundles  # noqa: E402
from asyncray._private.scheduling.cluster import DEFAULT, SPREAD, ClusterView, NodeAffinity  # noqa: E402


def node_id(i: int) -> bytes:
    return i.to_bytes(28, "big")


def busy_cluster(n: int) -> ClusterView:
    view = ClusterView(seed=1)
    for i in range(n):
        view.add_node(node_id(i), to_units({"CPU": 16, "memory": 64e9, **({"foo": 1} if i % 100 == 0 else {})}))
    for i in range(n):
        view.acquire(node_id(i), to_units({"CPU": 8 + i % 8}))
    return view


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--decisions", type=int, default=20000)
    a = ap.parse_args()
    view = busy_cluster(a.nodes)
    cpu = to_units({"CPU": 1})
    cases = [
        ("DEFAULT, {CPU: 1}, busy cluster", cpu, DEFAULT),
        ("DEFAULT, {foo: 1} (on 1 % of nodes)", to_units({"foo": 1}), DEFAULT),
        ("SPREAD, {CPU: 1}", cpu, SPREAD),
        ("NodeAffinity(hard), {CPU: 1}", cpu, NodeAffinity(node_id(7), False)),
    ]
    print(f"scheduling decision against {a.nodes:,} simulated nodes (target <= 50 us)")
    for name, need, strategy in cases:
        rounds = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(a.decisions):
                view.pick(need, strategy, node_id(3))
            rounds.append((time.perf_counter() - t) / a.decisions)
        print(f"  {name:<40} {statistics.median(rounds) * 1e6:7.2f} us")
    pg = [to_units({"CPU": 1})] * 4
    t = time.perf_counter()
    for _ in range(200):
        bundles.place(view, pg, bundles.SPREAD)
    print(f"  {'placement group, 4 bundles, SPREAD':<40} {(time.perf_counter() - t) / 200 * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
