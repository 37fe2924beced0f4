"""The one module that speaks SQLite: writes the head's tables, and reads them back on restart.

WAL mode; the changes of one loop tick are committed together before the replies that depend
on them go out (the server calls `commit` at the end of each batch). Recovered: jobs (as
finished: their drivers must reconnect), the KV store, the job counter, placement groups (with
their state and the node of each bundle). Not recovered: nodes (they re-register), which is
what Ray's GCS does too.
"""
from __future__ import annotations

import json
import sqlite3

from asyncray._private.head.placement_groups import GroupRecord
from asyncray._private.head.tables import JobInfo, Tables

SCHEMA_VERSION = 2


class Snapshot:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (job_id INTEGER PRIMARY KEY, info TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (ns TEXT, key BLOB, value BLOB, PRIMARY KEY (ns, key))")
        self.db.execute("CREATE TABLE IF NOT EXISTS groups (pg_id BLOB PRIMARY KEY, info TEXT)")
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def restore(self, tables: Tables) -> int:
        """Load what a previous head wrote; returns its incarnation number."""
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row and int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"snapshot schema {row[0]} is not {SCHEMA_VERSION}; start with a new session")
        for job_id, info in self.db.execute("SELECT job_id, info FROM jobs"):
            d = json.loads(info)
            tables.jobs[job_id] = JobInfo(job_id, d["namespace"], d["driver_address"], d["pid"], alive=False)
            tables.next_job_id = max(tables.next_job_id, job_id + 1)
        for ns, key, value in self.db.execute("SELECT ns, key, value FROM kv"):
            tables.kv[(ns, bytes(key))] = bytes(value)
        for pg_id, info in self.db.execute("SELECT pg_id, info FROM groups"):
            d = json.loads(info)
            tables.groups.add(GroupRecord(bytes(pg_id), d["spec"], d["state"], [bytes.fromhex(n) if n else None for n in d["nodes"]]))
        tables.dirty.clear()  # what was just read needs no writing
        tables.groups.after_restart()
        row = self.db.execute("SELECT value FROM meta WHERE key='incarnation'").fetchone()
        incarnation = int(row[0]) + 1 if row else 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('incarnation', ?)", (str(incarnation),))
        return incarnation

    def commit(self, tables: Tables) -> None:
        if not tables.dirty:
            return
        dirty = set(tables.dirty)
        tables.dirty.clear()  # in place: the group table shares this set
        cur = self.db.cursor()
        cur.execute("BEGIN")
        for kind, key in dirty:
            if kind == "job":
                job = tables.jobs[key]  # type: ignore[index]
                cur.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?)", (job.job_id, json.dumps(
                    {"namespace": job.namespace, "driver_address": job.driver_address, "pid": job.pid,
                     "alive": job.alive})))
            elif kind == "kv":
                ns, k = key  # type: ignore[misc]
                value = tables.kv.get((ns, k))
                if value is None:
                    cur.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, k))
                else:
                    cur.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (ns, k, value))
            elif kind == "group":
                rec = tables.groups.groups.get(key)  # type: ignore[arg-type]
                if rec is None:
                    cur.execute("DELETE FROM groups WHERE pg_id=?", (key,))
                else:
                    cur.execute("INSERT OR REPLACE INTO groups VALUES (?, ?)", (key, json.dumps(
                        {"spec": rec.spec, "state": rec.state, "nodes": [n.hex() if n else "" for n in rec.nodes]})))
        cur.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
