"""Placement groups as resources: where bundles go, and what a reserved bundle looks like.

As in Ray, a bundle reserved on a node turns part of the node's resources into resources of
its own, named after the group, so that the ordinary lease scheduler places work into it:
reserving {"CPU": 2} as bundle 0 of group <pg> takes 2 CPU from the node and adds
`CPU_group_0_<pg>` = 2 and `CPU_group_<pg>` = 2 (the second for "any bundle", index -1), plus
`bundle_group_0_<pg>` and `bundle_group_<pg>` (1,000 each) that a zero-resource task in the
bundle asks 0.001 of, so it too lands on the bundle's node. A task in the bundle asks for the
renamed resources instead of the node's own. Pure: no I/O.
"""
from __future__ import annotations

from typing import Optional

from asyncray._private.node.resources import SCALE, fits
from asyncray._private.scheduling.cluster import ClusterView

PACK, SPREAD, STRICT_PACK, STRICT_SPREAD = "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"
STRATEGIES = (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD)
BUNDLE = "bundle"
BUNDLE_UNITS = 1000 * SCALE
TASK_BUNDLE_UNITS = round(0.001 * SCALE)


def group_resource(name: str, pg_hex: str, index: int = -1) -> str:
    return f"{name}_group_{pg_hex}" if index < 0 else f"{name}_group_{index}_{pg_hex}"


def reserved_resources(pg_hex: str, index: int, bundle: dict[str, int]) -> dict[str, int]:
    """What a reserved bundle adds to its node's resources."""
    out: dict[str, int] = {}
    for name, v in list(bundle.items()) + [(BUNDLE, BUNDLE_UNITS)]:
        out[group_resource(name, pg_hex, index)] = v
        wild = group_resource(name, pg_hex)
        out[wild] = out.get(wild, 0) + v
    return out


def shape_in_bundle(need: dict, pg_hex: str, index: int, bundle_amount: float = TASK_BUNDLE_UNITS) -> dict:
    """A task's or actor's resources, renamed to come out of the group: out of the group's
    "any bundle" resources always (they count what the whole group holds), and out of bundle
    `index`'s too when one is named, as Ray's AddPlacementGroupConstraint does; so work in
    bundle 0 and work in "any bundle" never overcommit bundle 0 together. `bundle_amount`: the
    share of the bundle resource it asks for (0.001, in the units of `need`)."""
    out: dict = {}
    for k, v in list(need.items()) + [(BUNDLE, bundle_amount)]:
        out[group_resource(k, pg_hex)] = v
        if index >= 0:
            out[group_resource(k, pg_hex, index)] = v
    return out


def group_of(resource: str) -> str | None:
    """The group (hex id) a group resource belongs to, None for a node's own resource."""
    if "_group_" not in resource:
        return None
    return resource.rsplit("_", 1)[1]


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def place(view: ClusterView, bundles: list[dict[str, int]], strategy: str,
          placed: Optional[list] = None) -> Optional[list[bytes]]:
    """One node per bundle, among nodes that have the resources free now; None when the
    strategy cannot be met now (the group stays pending and is tried again when resources
    free up or nodes join). Nodes are tried least-loaded first; decisions count against a
    scratch copy of free resources, so bundles placed together never overcommit a node.

    `placed`: the node of each bundle that is still reserved (None for those to place), when
    a group lost some bundles with their node: the others stay where they are, and the
    strategy holds for the group as a whole."""
    taken: dict[bytes, dict[str, int]] = {}  # scratch copies of the nodes bundles went to
    order = [nid for _, nid in view._order]
    chosen: list = list(placed) if placed else [None] * len(bundles)
    todo = [i for i, n in enumerate(chosen) if n is None]
    used: list[bytes] = list(dict.fromkeys(n for n in chosen if n is not None))

    def free(nid: bytes) -> dict[str, int]:
        f = taken.get(nid)
        return view.nodes[nid].free if f is None else f

    def take(nid: bytes, need: dict[str, int]) -> None:
        f = taken.setdefault(nid, dict(view.nodes[nid].free))
        for k, v in need.items():
            f[k] = f.get(k, 0) - v

    if strategy in (STRICT_PACK, PACK):
        total: dict[str, int] = {}
        for i in todo:
            total = _add(total, bundles[i])
        # STRICT_PACK: the node the group is on, if any; PACK: that node first.
        for nid in (used if used and strategy == STRICT_PACK else used + [n for n in order if n not in used]):
            if nid in view.nodes and fits(free(nid), total):
                for i in todo:
                    chosen[i] = nid
                return chosen
        if strategy == STRICT_PACK:
            return None
    for i in todo:
        b = bundles[i]
        if strategy == PACK:  # the nodes already used first, in the order they were used
            candidates = used + [n for n in order if n not in used]
        elif strategy == SPREAD:  # unused nodes first, then reuse
            candidates = [n for n in order if n not in used] + used
        elif strategy == STRICT_SPREAD:
            candidates = [n for n in order if n not in used]
        else:
            raise ValueError(f"unknown placement strategy {strategy!r}")
        nid = next((n for n in candidates if n in view.nodes and fits(free(n), b)), None)
        if nid is None:
            return None
        take(nid, b)
        chosen[i] = nid
        if nid not in used:
            used.append(nid)
    return chosen


def feasible(view: ClusterView, bundles: list[dict[str, int]], strategy: str) -> bool:
    """Could the group ever be placed on the nodes there are now (all resources free)?"""
    idle = ClusterView()
    for nid, n in view.nodes.items():
        idle.add_node(nid, n.total)
    return place(idle, bundles, strategy) is not None
