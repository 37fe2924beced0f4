"""From a task's or actor's options to what its lease request carries: the resource shape
(renamed into a placement group's bundle when it runs in one) and the strategy on the wire.

Runs in the submitting process. Ray's rules: an explicit PlacementGroupSchedulingStrategy (or
the deprecated placement_group= options) puts the work in that group; with no strategy at all,
work created by a task that runs in a group with capture_child_tasks goes into the same group
(any bundle); "DEFAULT" given explicitly opts out. The bundle index must be -1 or a valid
index, and the shape must fit in some bundle of the group.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from asyncray._private.node.resources import fits
from asyncray._private.scheduling.bundles import shape_in_bundle

TASK_BUNDLE_AMOUNT = 0.001


class Placement(NamedTuple):
    placement: dict  # resources needed to be placed
    held: dict  # resources held while running (the same for tasks)
    strategy: Any  # wire form: None, "SPREAD" or ["NODE", node_id, soft, spill]
    placement_group: Optional[list]  # [pg_id, capture_child_tasks, bundle specs] when it runs in a group


_context: Any = None


def current_group() -> Optional[list]:
    """[pg_id, capture, bundle specs] of the task or actor this process runs, if it runs in a group.
    Asked on every .remote() of work without a strategy: one attribute read."""
    global _context
    if _context is None:
        from asyncray._private.worker.executor import context

        _context = context
    return _context.placement_group


def inherits_group(options: dict) -> bool:
    """Whether this work would join the creating task's group (decided per call)."""
    return options.get("scheduling_strategy") is None and options.get("placement_group", "default") == "default" \
        and options.get("placement_group_capture_child_tasks") is not False


def resolve(options: dict, placement: dict, held: dict, what: str) -> Placement:
    from asyncray.util.placement_group import PlacementGroup
    from asyncray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    for unsupported in ("label_selector", "fallback_strategy"):
        if options.get(unsupported):
            raise NotImplementedError(
                f"{what}: {unsupported}={options[unsupported]!r} needs node labels, which asyncray nodes do not have "
                f"yet; no node would match, so the work would never run. Remove the option, or place the work with "
                f"resources={{...}} or NodeAffinitySchedulingStrategy instead.")
    strategy = options.get("scheduling_strategy")
    pg: Any = None
    index = -1
    capture = options.get("placement_group_capture_child_tasks")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg, index = strategy.placement_group, strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    elif strategy is None:
        pg = options.get("placement_group", "default")
        index = options.get("placement_group_bundle_index", -1)
        if pg == "default":
            pg = None
            current = current_group() if capture is not False else None
            if current is not None and (capture or current[1]):
                pg = PlacementGroup(current[0], current[2])
                capture = True
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        return Placement(placement, held, ["NODE", _node_id(strategy.node_id), bool(strategy.soft),
                                           bool(strategy._spill_on_unavailable)], None)
    elif strategy == "SPREAD":
        return Placement(placement, held, "SPREAD", None)
    if pg is None:
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return Placement(placement, held, None, None)
    if not isinstance(pg, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup, got {pg!r}.")
    pg.check_usable()
    count = pg.bundle_count
    if not isinstance(index, int) or index >= count or index < -1:
        raise ValueError(f"placement group bundle index {index} is invalid. Valid placement group indexes: "
                         f"0-{count}")
    specs = pg.bundle_specs if index == -1 else [pg.bundle_specs[index]]
    for need, kind in ((held, "resource request"), (placement, "placement")):
        if not any(fits(b, need) for b in specs):
            detail = (f"the resource request {need} cannot fit" if kind == "resource request" else
                      f"the actor requires {need.get('CPU', 0)} CPU for creation, but it cannot fit")
            raise ValueError(f"Cannot schedule {what} with the placement group because {detail} into any bundles "
                             f"of the placement group, {specs}." + (
                                 "" if kind == "resource request" else
                                 " Consider creating a placement group with CPU resources."))
    pg_hex = pg.id.hex()
    return Placement(shape_in_bundle(placement, pg_hex, index, TASK_BUNDLE_AMOUNT),
                     shape_in_bundle(held, pg_hex, index, TASK_BUNDLE_AMOUNT), None,
                     [pg.id.binary(), bool(capture), pg.bundle_specs])


def _node_id(node_id: Any) -> bytes:
    if isinstance(node_id, str):
        try:
            raw = bytes.fromhex(node_id)
        except ValueError:
            raw = b""
        if len(raw) == 28:
            return raw
    raise ValueError(f"NodeAffinitySchedulingStrategy needs node_id as a 56-character hex string (as ray.nodes() "
                     f"and get_runtime_context().get_node_id() give), got {node_id!r}.")


def spillback_strategy(strategy: Any, target: bytes) -> Any:
    """What a request sent on to `target` carries: a node affinity stays as the user gave it
    (hard: it must run there; soft: it waits there unless told to spill); DEFAULT and SPREAD
    become a soft affinity to `target` that may pass the request on once more if `target`
    turns out busy after all (views lag by up to ~100 ms; each hop is counted against the
    node it goes to, so hops stop as soon as views agree)."""
    if isinstance(strategy, list):
        return strategy
    return ["NODE", target, True, True]
