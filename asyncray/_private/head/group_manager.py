"""Placement groups on the head: places each group's bundles from the head's view of the
nodes' free resources and reserves them in two phases, as Ray's GCS does (every chosen node
prepares its bundles, ReserveBundles; once all have, the head commits them, CommitBundles; if
one refuses, the others give theirs back), retries when a node refuses or dies, and removes
groups (ReleaseBundles to every node). The table it keeps is
placement_groups.py (plain state); the node choice is scheduling/bundles.py (plain logic).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from asyncray._private import protocol as p
from asyncray._private.head.placement_groups import CREATED, PENDING, REMOVED, RESCHEDULING, GroupRecord
from asyncray._private.node.resources import to_units
from asyncray._private.scheduling import bundles
from asyncray._private.transport.sockets import Peer

if TYPE_CHECKING:
    from asyncray._private.head.server import HeadServer

logger = logging.getLogger("asyncray.head")


class GroupManager:
    def __init__(self, head: "HeadServer") -> None:
        self.head = head
        self.groups = head.tables.groups
        self._reservations: dict[int, bytes] = {}  # ReserveBundles request id -> group id
        # ReleaseBundles request id -> ([remover identity, its req_id, nodes left], node id)
        self._removals: dict[int, tuple[list, bytes]] = {}

    def place_pending(self) -> None:
        """Resources came free or a node joined: place what waits, oldest first."""
        for pg_id in list(self.groups.pending):
            rec = self.groups.groups[pg_id]
            if not rec.reserving:
                self.place(rec)

    def node_died(self, node_id: bytes) -> None:
        for group in list(self.groups.groups.values()):
            if group.state != REMOVED and node_id in group.nodes:
                self._lost_node(group, node_id)
        for rid in [rid for rid, (_, n) in self._removals.items() if n == node_id]:
            self._removal_answered(self._removals.pop(rid)[0])  # a dead node has let go too

    def creator_actor_gone(self, actor_id: bytes) -> None:
        for group in self.groups.creator_actor_gone(actor_id):
            self.remove(group)

    def job_gone(self, job_id: int) -> None:
        for group in self.groups.job_gone(job_id):
            self.remove(group)

    def on_create_placement_group(self, msg: p.CreatePlacementGroup, peer: Peer) -> None:
        spec = msg.spec
        if spec.get("name") and self.groups.named(spec.get("namespace") or "", spec["name"]) is not None:
            from asyncray._private.serialization import dumps_exception

            err = ValueError(f"Placement group name {spec['name']!r} is already taken in namespace "
                             f"{spec.get('namespace')!r}. Use another name, or get_placement_group({spec['name']!r}).")
            peer.answer(p.PlacementGroupReply(msg.req_id, dumps_exception(err)))
            return
        rec = GroupRecord(msg.pg_id, spec)
        self.groups.add(rec)
        peer.answer(p.PlacementGroupReply(msg.req_id, None))
        self.place(rec)

    def place(self, rec: GroupRecord) -> None:
        units = [to_units(b) for b in rec.spec["bundles"]]
        rec.attempts += 1
        nodes = bundles.place(self.head.view, units, rec.spec["strategy"], rec.nodes or None)
        if nodes is None:
            if not rec.warned and self.head.view.nodes and not bundles.feasible(self.head.view, units, rec.spec["strategy"]):
                rec.warned = True
                logger.warning("placement group %s (%s, %s) cannot be placed on the nodes of this cluster; it stays "
                               "pending until nodes that fit join", rec.pg_id.hex(), rec.spec["strategy"],
                               rec.spec["bundles"])
            return
        rec.placing = [i for i, n in enumerate(rec.nodes or [None] * len(units)) if n is None]
        rec.nodes = nodes
        per_node: dict[bytes, list] = {}
        for index in rec.placing:
            per_node.setdefault(nodes[index], []).append([index, units[index]])
            self.head.view.acquire(nodes[index], units[index])  # until the node's reply says what it has now
        for node_id, items in per_node.items():
            rid = next(self.head._req_ids)
            rec.reserving[rid] = node_id
            self._reservations[rid] = rec.pg_id
            self.head._node_send(node_id, p.ReserveBundles(rid, rec.pg_id, items))

    def on_reserve_bundles_reply(self, msg: p.ReserveBundlesReply, peer: Peer) -> None:
        removal, node_id = self._removals.pop(msg.req_id, (None, b""))
        if removal is not None:  # a node has let go of a removed group
            self.head._node_resources(node_id, msg.total, msg.free)
            self._removal_answered(removal)
            return
        pg_id = self._reservations.pop(msg.req_id, None)
        rec = self.groups.groups.get(pg_id) if pg_id is not None else None
        node_id = rec.reserving.pop(msg.req_id, None) if rec is not None else None
        if node_id is not None:
            self.head._node_resources(node_id, msg.total, msg.free)
        if rec is None or rec.state == REMOVED or node_id is None:
            return
        if not msg.ok:
            rec.refused = True
        self._attempt_done(rec)

    def _attempt_done(self, rec: GroupRecord) -> None:
        """Every node asked in this placement attempt has answered (or died)."""
        if rec.reserving:
            return
        per_node: dict[bytes, list[int]] = {}
        for index in rec.placing:
            per_node.setdefault(rec.nodes[index], []).append(index)
        if rec.refused:  # a stale view or a node's death: give back what this attempt prepared
            for node, indices in per_node.items():
                self.head._node_send(node, p.ReleaseBundles(0, rec.pg_id, False, indices))
            self.groups.requeue(rec)
            # Try again soon, not only at the next resource report: a quiet cluster has none.
            self.head.loop.call_later(0.05, self.place_pending)
            return
        for node, indices in per_node.items():  # every node prepared: make the bundles usable
            self.head._node_send(node, p.CommitBundles(rec.pg_id, indices))
            self._committed_in_view(node, rec, indices)
        self.groups.created(rec)
        for identity, req_id in rec.waiters:
            self.head.endpoint.reply(identity, p.PlacementGroupReply(req_id, None))
        rec.waiters.clear()
        self.head.place_waiting_actors()

    def _lost_node(self, rec: GroupRecord, node_id: bytes) -> None:
        """Bundles on a dead node are placed again (as in Ray); the others stay where they are.
        Work that ran in them died with the node (actors restart into the new bundles)."""
        if rec.reserving:  # an attempt in flight fails (whether the node had answered or not)
            for rid in [rid for rid, n in rec.reserving.items() if n == node_id]:
                del rec.reserving[rid]
                self._reservations.pop(rid, None)
            rec.refused = True
            rec.placing = [i for i in rec.placing if rec.nodes[i] != node_id]  # nothing to give back there
            for i, n in enumerate(rec.nodes):
                if n == node_id:
                    rec.nodes[i] = None
            self._attempt_done(rec)  # now, or when the other nodes have answered
            return
        self.groups.lost_bundles(rec, node_id)
        self.place(rec)

    def on_wait_placement_group(self, msg: p.WaitPlacementGroup, peer: Peer) -> None:
        rec = self.groups.groups.get(msg.pg_id)
        if rec is not None and rec.state == CREATED:
            peer.answer(p.PlacementGroupReply(msg.req_id, None))
        elif rec is not None and rec.state in (PENDING, RESCHEDULING):
            rec.waiters.append((peer.identity, msg.req_id))
        else:
            peer.answer(p.PlacementGroupReply(msg.req_id, _group_removed_error(msg.pg_id, rec is not None)))

    def _committed_in_view(self, node_id: bytes, rec: GroupRecord, indices: list[int]) -> None:
        """The head's view gains the committed bundles' resources now (the node's report
        follows), so actors placed in the group right after ready() find them."""
        node = self.head.view.nodes.get(node_id)
        if node is None:
            return
        total, free = dict(node.total), dict(node.free)
        for index in indices:
            for k, v in bundles.reserved_resources(rec.pg_id.hex(), index, to_units(rec.spec["bundles"][index])).items():
                total[k] = total.get(k, 0) + v
                free[k] = free.get(k, 0) + v
        self.head._node_resources(node_id, total, free)

    def _removal_answered(self, removal: list) -> None:
        removal[2] -= 1
        if removal[2] == 0:
            if removal[0] is not None:
                self.head.endpoint.reply(removal[0], p.PlacementGroupReply(removal[1], None))
            self.head._resources_changed()

    def on_remove_placement_group(self, msg: p.RemovePlacementGroup, peer: Peer) -> None:
        rec = self.groups.groups.get(msg.pg_id)
        if rec is not None and rec.state != REMOVED:
            self.remove(rec, (peer.identity, msg.req_id))  # answered once every node let go
        else:
            peer.answer(p.PlacementGroupReply(msg.req_id, None))

    def remove(self, rec: GroupRecord, remover: tuple | None = None) -> None:
        self.groups.removed(rec)
        for identity, req_id in rec.waiters:
            self.head.endpoint.reply(identity, p.PlacementGroupReply(req_id, _group_removed_error(rec.pg_id, True)))
        rec.waiters.clear()
        self.head.group_removed(rec.pg_id)
        for node_id, need in zip(rec.nodes, rec.spec["bundles"]):
            if node_id is not None:
                self.head.view.release(node_id, to_units(need))  # until the node's answer
        # Every node: work may wait for this group anywhere.
        removal = [remover[0] if remover else None, remover[1] if remover else 0, len(self.head.node_addresses)]
        if not self.head.node_addresses:  # no node to tell
            removal[2] = 1
            self._removal_answered(removal)
            return
        for node_id, address in self.head.node_addresses.items():
            rid = next(self.head._req_ids)
            self._removals[rid] = (removal, node_id)
            self.head.endpoint.send(address, p.ReleaseBundles(rid, rec.pg_id, True))

    def on_get_placement_groups(self, msg: p.GetPlacementGroups, peer: Peer) -> None:
        if msg.pg_id is not None:
            rec = self.groups.groups.get(msg.pg_id)
            found = [rec] if rec is not None else []
        elif msg.name:
            rec = self.groups.named(msg.namespace, msg.name)
            found = [rec] if rec is not None else []
        else:
            found = list(self.groups.groups.values())
        peer.answer(p.PlacementGroupsReply(msg.req_id, [r.table() for r in found]))


def _group_removed_error(pg_id: bytes, known: bool) -> bytes:
    from asyncray._private.serialization import dumps_exception

    what = "was removed" if known else "is unknown to this cluster"
    return dumps_exception(ValueError(f"Placement group {pg_id.hex()} {what}: it will never be ready."))
