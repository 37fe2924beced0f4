"""Scheduling strategies, as in `ray.util.scheduling_strategies`: pass one as
`.options(scheduling_strategy=...)` to a task or an actor. "DEFAULT" and "SPREAD" are given as
strings."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]


class PlacementGroupSchedulingStrategy:
    """Run in a placement group's bundle (`placement_group_bundle_index`, -1: any bundle);
    with `placement_group_capture_child_tasks`, the tasks and actors this one creates without
    a strategy of their own go into the same group."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy(placement_group={self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index}, "
                f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})")


class NodeAffinitySchedulingStrategy:
    """Run on the node `node_id` (a 56-character hex string, as `ray.nodes()` and
    `get_runtime_context().get_node_id()` give). With soft=False a dead or unknown node makes
    the task fail with TaskUnschedulableError (an actor: ActorUnschedulableError); with
    soft=True it runs elsewhere instead, and with `_spill_on_unavailable` also when the node
    is busy."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False) -> None:
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"
