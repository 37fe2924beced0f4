"""The head's placement group lifecycle (GroupManager) against a fake head that records what it
would send: two-phase reservation, refusals, and nodes dying mid-attempt. No processes."""
from __future__ import annotations

import itertools

from asyncray._private import protocol as p
from asyncray._private.head.group_manager import GroupManager
from asyncray._private.head.placement_groups import CREATED, PENDING, GroupRecord
from asyncray._private.head.tables import Tables
from asyncray._private.node.resources import to_units
from asyncray._private.scheduling.cluster import ClusterView

A, B = b"A" * 28, b"B" * 28


class FakeHead:
    def __init__(self, *nodes: bytes) -> None:
        self.tables = Tables()
        self.view = ClusterView()
        self.node_addresses = {}
        for n in nodes:
            self.view.add_node(n, to_units({"CPU": 2}))
            self.node_addresses[n] = f"ipc://{n[:1].decode()}"
        self._req_ids = itertools.count(1)
        self.sent: list[tuple[bytes, object]] = []
        self.timers: list = []
        self.loop = self

    def call_later(self, _delay, fn):
        self.timers.append(fn)

    def _node_send(self, node_id, msg):
        self.sent.append((node_id, msg))

    def _node_resources(self, node_id, total, free):
        pass

    def group_removed(self, pg_id):
        pass

    def place_waiting_actors(self):
        pass

    def _resources_changed(self, new_node=False):
        pass

    def run_timers(self):
        timers, self.timers = self.timers, []
        for fn in timers:
            fn()


def reservations(head: FakeHead) -> dict[bytes, p.ReserveBundles]:
    out = {n: m for n, m in head.sent if isinstance(m, p.ReserveBundles)}
    head.sent.clear()
    return out


def answer(mgr: GroupManager, msg: p.ReserveBundles, ok: bool = True) -> None:
    mgr.on_reserve_bundles_reply(p.ReserveBundlesReply(msg.req_id, ok, {}, {}), None)


def spread_group(mgr: GroupManager) -> GroupRecord:
    rec = GroupRecord(b"g" * 18, {"bundles": [{"CPU": 1}, {"CPU": 1}], "strategy": "STRICT_SPREAD", "job_id": 1})
    mgr.groups.add(rec)
    mgr.place(rec)
    return rec


def test_commits_only_once_every_node_prepared():
    head = FakeHead(A, B)
    mgr = GroupManager(head)
    rec = spread_group(mgr)
    asked = reservations(head)
    assert set(asked) == {A, B}
    answer(mgr, asked[A])
    assert rec.state == PENDING and not any(isinstance(m, p.CommitBundles) for _, m in head.sent)
    answer(mgr, asked[B])
    assert rec.state == CREATED
    assert {n for n, m in head.sent if isinstance(m, p.CommitBundles)} == {A, B}


def test_a_refusal_gives_back_what_others_prepared_and_retries():
    head = FakeHead(A, B)
    mgr = GroupManager(head)
    rec = spread_group(mgr)
    asked = reservations(head)
    answer(mgr, asked[A])
    answer(mgr, asked[B], ok=False)
    released = [(n, m) for n, m in head.sent if isinstance(m, p.ReleaseBundles)]
    assert {n for n, _ in released} == {A, B} and all(not m.removed for _, m in released)
    assert rec.state == PENDING and rec.nodes == []
    head.sent.clear()
    head.run_timers()  # retried without waiting for a resource report
    assert set(reservations(head)) == {A, B}


def test_node_dying_after_it_prepared_fails_the_attempt():
    head = FakeHead(A, B, b"C" * 28)
    mgr = GroupManager(head)
    rec = spread_group(mgr)
    asked = reservations(head)
    first, second = sorted(asked)
    answer(mgr, asked[first])  # prepared, then its node dies before the other answered
    head.view.remove_node(first)
    del head.node_addresses[first]
    mgr.node_died(first)
    answer(mgr, asked[second])
    assert rec.state == PENDING, "never CREATED with a bundle on no node"
    assert any(isinstance(m, p.ReleaseBundles) and n == second for n, m in head.sent)
    head.sent.clear()
    head.run_timers()
    again = reservations(head)
    assert first not in again and len(again) == 2


def test_only_node_dying_before_it_answered_is_retried_without_a_report():
    head = FakeHead(A)
    mgr = GroupManager(head)
    rec = GroupRecord(b"h" * 18, {"bundles": [{"CPU": 1}], "strategy": "PACK", "job_id": 1})
    mgr.groups.add(rec)
    mgr.place(rec)
    assert set(reservations(head)) == {A}
    head.view.remove_node(A)
    del head.node_addresses[A]
    mgr.node_died(A)
    head.view.add_node(B, to_units({"CPU": 2}))
    head.node_addresses[B] = "ipc://B"
    head.run_timers()
    assert set(reservations(head)) == {B}
