"""The head's SQLite snapshot: what one head writes, the next one reads back (pure: a file,
no processes)."""
from __future__ import annotations

from asyncray._private.head.placement_groups import PENDING, REMOVED, GroupRecord
from asyncray._private.head.snapshot import Snapshot
from asyncray._private.head.tables import Tables


def _spec(name: str = "") -> dict:
    return {"bundles": [{"CPU": 1.0}], "strategy": "PACK", "name": name, "namespace": "ns", "lifetime": None,
            "job_id": 1, "creator_actor": None, "creator_detached": False}


def test_round_trip_jobs_kv_and_placement_groups(tmp_path):
    path = str(tmp_path / "head.sqlite")
    tables = Tables()
    snap = Snapshot(path)
    assert snap.restore(tables) == 1
    job = tables.add_job("ns", "ipc://driver", 42)
    tables.kv_put("ns", b"k", b"v", overwrite=True)
    pending, created, removed = (GroupRecord(bytes([i]) * 18, _spec(n)) for i, n in ((1, "p"), (2, "c"), (3, "r")))
    created.spec["lifetime"] = "detached"
    for rec in (pending, created, removed):
        tables.groups.add(rec)
    created.nodes = [b"\x07" * 28]
    tables.groups.created(created)
    tables.groups.removed(removed)
    snap.commit(tables)
    assert not tables.dirty
    snap.close()

    again = Tables()
    snap = Snapshot(path)
    assert snap.restore(again) == 2, "each restart is a new incarnation"
    assert again.jobs[job.job_id].namespace == "ns" and not again.jobs[job.job_id].alive
    assert again.kv_get("ns", b"k") == b"v"
    groups = again.groups
    # The recovered job is over: its groups are gone; the detached one is placed again.
    assert groups.groups[pending.pg_id].state == REMOVED
    assert groups.groups[removed.pg_id].state == REMOVED
    kept = groups.groups[created.pg_id]
    assert kept.state == PENDING and kept.nodes == [] and list(groups.pending) == [created.pg_id]
    assert groups.named("ns", "c").pg_id == created.pg_id
    assert groups.named("ns", "r") is None and groups.named("ns", "p") is None, "a removed group's name is free"
    snap.commit(again)  # what the restart changed is written
    snap.close()
    third = Tables()
    Snapshot(path).restore(third)
    assert third.groups.groups[created.pg_id].state == PENDING


def test_group_dropped_from_the_table_is_deleted_from_the_snapshot(tmp_path, monkeypatch):
    from asyncray._private.head import placement_groups

    monkeypatch.setattr(placement_groups, "KEEP_REMOVED", 1)
    path = str(tmp_path / "head.sqlite")
    tables = Tables()
    snap = Snapshot(path)
    snap.restore(tables)
    first, second = GroupRecord(b"\x01" * 18, _spec()), GroupRecord(b"\x02" * 18, _spec())
    for rec in (first, second):
        tables.groups.add(rec)
        tables.groups.removed(rec)
    snap.commit(tables)
    snap.close()
    again = Tables()
    Snapshot(path).restore(again)
    assert list(again.groups.groups) == [second.pg_id]
