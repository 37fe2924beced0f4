"""asyncray.util: Ray's utility surface (named actors, placement groups, scheduling strategies)."""
from __future__ import annotations

from asyncray._private.api import list_named_actors
from asyncray.util import scheduling_strategies
from asyncray.util.placement_group import (PlacementGroup, get_current_placement_group, get_placement_group,
                                           placement_group, placement_group_table, remove_placement_group)

__all__ = ["list_named_actors", "scheduling_strategies", "PlacementGroup", "placement_group",
           "remove_placement_group", "get_placement_group", "placement_group_table", "get_current_placement_group"]
