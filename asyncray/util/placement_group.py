"""Placement groups, as in `ray.util.placement_group`: reserve bundles of resources across the
cluster at once (gang scheduling), then place tasks and actors into them with
`PlacementGroupSchedulingStrategy`.

The head places a group's bundles and has the nodes reserve them (head/placement_groups.py);
`ready()` is an ObjectRef the head resolves when every bundle is reserved, with no task run.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from asyncray._private.scheduling.bundles import STRATEGIES

__all__ = ["PlacementGroup", "PlacementGroupID", "placement_group", "remove_placement_group", "get_placement_group",
           "placement_group_table", "get_current_placement_group", "VALID_PLACEMENT_GROUP_STRATEGIES"]

VALID_PLACEMENT_GROUP_STRATEGIES = set(STRATEGIES)
ID_LEN = 18  # as Ray's PlacementGroupID


class PlacementGroupID:
    __slots__ = ("_id",)

    def __init__(self, raw: bytes) -> None:
        self._id = raw

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return not any(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"

    def __reduce__(self) -> Any:
        return PlacementGroupID, (self._id,)


class PlacementGroup:
    """A handle to a placement group: pickles into any task or actor."""

    def __init__(self, id: Union[PlacementGroupID, bytes], bundle_cache: Optional[List[Dict]] = None) -> None:
        self.id = id if isinstance(id, PlacementGroupID) else PlacementGroupID(id)
        self._bundle_cache = bundle_cache
        self._ready: Any = None  # (client, ref): one wait at the head per handle, however often polled

    @staticmethod
    def empty() -> "PlacementGroup":
        return PlacementGroup(PlacementGroupID(bytes(ID_LEN)))

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self) -> Any:
        """An ObjectRef that becomes this group once every bundle is reserved: `get`, `wait`
        or `await` it. If the group is removed first, getting it raises."""
        from asyncray._private import protocol as p
        from asyncray._private.core.common import error_payload
        from asyncray._private import serialization

        client = _client()
        if self._ready is not None and self._ready[0] is client:
            return self._ready[1]
        me = PlacementGroup(self.id, self._bundle_cache)

        def payload(msg: p.PlacementGroupReply) -> list:
            if msg.error is not None:
                return error_payload(serialization.deserialize_exception(msg.error))
            return [p.INLINE, serialization.serialize(me).to_bytes()]

        ref = client.ref_from_request(client.head_address, lambda rid: p.WaitPlacementGroup(rid, self.id.binary()),
                                      payload)
        self._ready = (client, ref)
        return ref

    def wait(self, timeout_seconds: Union[float, int] = 30) -> bool:
        """True once the group is created, False if it is not within `timeout_seconds`."""
        from asyncray._private.api import wait

        ready, _ = wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    @property
    def bundle_specs(self) -> List[Dict[str, float]]:
        self._fill_bundle_cache()
        return [dict(b) for b in self._bundle_cache]

    @property
    def bundle_count(self) -> int:
        self._fill_bundle_cache()
        return len(self._bundle_cache)

    def check_usable(self) -> None:
        """ValueError if this process removed the group (the head fails later uses too)."""
        client = _client()
        if self.id.binary() in client.removed_placement_groups:
            raise ValueError(f"Placement group {self.id.hex()} was removed (remove_placement_group); it cannot "
                             f"schedule tasks or actors any more. Create a new one.")

    def _fill_bundle_cache(self) -> None:
        if self._bundle_cache is None:
            info = _table(self.id.binary(), "")
            if not info:
                raise ValueError(f"Placement group {self.id.hex()} is unknown to this cluster.")
            self._bundle_cache = list(info[0]["bundles"].values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()})"

    def __reduce__(self) -> Any:
        return PlacementGroup, (self.id, self._bundle_cache)


def _client() -> Any:
    from asyncray._private.api import _client as client

    return client()


def validate_placement_group(bundles: Any, strategy: str = "PACK", lifetime: Optional[str] = None) -> None:
    """Ray's argument checks, with Ray's messages."""
    from asyncray._private.options import _resource_quantity_error as resource_quantity_error

    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if len(bundles) == 0:
        raise ValueError('Bundles must be a non-empty list of resource dictionaries. For example: '
                         '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    for bundle in bundles:
        if (not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bundle.values())):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. For example: '
                             '`[{"CPU": 1.0}, {"GPU": 1.0}]`.')
        if len(bundle) == 0 or all(v == 0 for v in bundle.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 values. "
                             f"Bundles: {bundles}")
        for name, amount in bundle.items():
            err = resource_quantity_error(name, amount)
            if err:
                raise ValueError(f"{err} (in placement group bundle {bundle})")
    if strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: "
                         f"{VALID_PLACEMENT_GROUP_STRATEGIES}.")
    if lifetime not in (None, "detached"):
        raise ValueError(f"Placement group `lifetime` argument must be either `None` or 'detached'. Got {lifetime}.")


def placement_group(bundles: List[Dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: Optional[str] = None) -> PlacementGroup:
    """Reserve `bundles` (resource dicts) per `strategy`: PACK (as few nodes as possible),
    SPREAD (as many as possible), STRICT_PACK (one node), STRICT_SPREAD (one node per bundle).
    Returns at once; the group is PENDING until every bundle is reserved (see ready())."""
    from asyncray._private import protocol as p, serialization
    from asyncray._private.api import job_namespace

    validate_placement_group(bundles, strategy, lifetime)
    if not isinstance(name, str):
        raise TypeError(f"placement group name must be a string, got {name!r}.")
    from asyncray._private.worker.executor import context

    client = _client()
    pg_id = os.urandom(ID_LEN)
    specs = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    # Whose life a non-detached group shares, as in Ray: its job's and, made in an actor, that
    # actor's too (it goes when both are gone; a detached actor's job does not count).
    actor = context.actor
    spec = {"bundles": specs, "strategy": strategy, "name": name or "", "namespace": job_namespace(),
            "lifetime": lifetime, "job_id": client.job_id,
            "creator_actor": actor.actor_id if actor is not None else None,
            "creator_detached": actor is not None and actor.spec.get("lifetime") == "detached"}
    reply = client.call(client.head_address, lambda rid: p.CreatePlacementGroup(rid, pg_id, spec), timeout=60)
    if reply.error is not None:
        raise serialization.deserialize_exception(reply.error)
    return PlacementGroup(PlacementGroupID(pg_id), specs)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Remove the group: its bundles' resources go back to their nodes, the tasks and actors
    running in it are stopped (calls to such an actor raise ActorDiedError), and work waiting
    for it fails."""
    from asyncray._private import protocol as p

    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() takes a PlacementGroup, got {placement_group!r}.")
    client = _client()
    raw = placement_group.id.binary()
    client.call(client.head_address, lambda rid: p.RemovePlacementGroup(rid, raw), timeout=60)
    client.removed_placement_groups.add(raw)


def _table(pg_id: Optional[bytes], name: str) -> list:
    from asyncray._private import protocol as p
    from asyncray._private.api import job_namespace

    client = _client()
    reply = client.call(client.head_address, lambda rid: p.GetPlacementGroups(rid, pg_id, name, job_namespace()),
                        timeout=60)
    return reply.groups


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The group of that name in this job's namespace (ValueError if there is none)."""
    if not placement_group_name or not isinstance(placement_group_name, str):
        raise ValueError("Please supply a non-empty value to get_placement_group")
    found = _table(None, placement_group_name)
    if not found:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    info = found[0]
    return PlacementGroup(PlacementGroupID(bytes.fromhex(info["placement_group_id"])),
                          list(info["bundles"].values()))


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """Ray's table: for one group its dict (placement_group_id, name, bundles,
    bundles_to_node_id, strategy, state, stats); for all, {hex id: dict}. Removed groups stay
    listed as REMOVED."""
    if placement_group is not None:
        found = _table(placement_group.id.binary(), "")
        return found[0] if found else {}
    return {info["placement_group_id"]: info for info in _table(None, "")}


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the calling task or actor runs in; None in a driver or outside any group."""
    from asyncray._private.scheduling.strategy import current_group

    current = current_group()
    return PlacementGroup(PlacementGroupID(current[0]), current[2]) if current is not None else None
