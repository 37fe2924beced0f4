"""The node's workers: forked from the template, kept idle per (job, runtime_env), reaped.

The pool only keeps records and talks to the template through two pipes; the node manager
decides which worker serves which lease.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from asyncray._private import process

logger = logging.getLogger(__name__)


def env_key(job_id: int | None, runtime_env: Any) -> str:
    """Workers are reused only within one job and one runtime_env, as in Ray."""
    return json.dumps([job_id, runtime_env], sort_keys=True)


PRESTARTED = env_key(None, None)
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "NUMEXPR_NUM_THREADS")


@dataclass
class WorkerRecord:
    worker_id: bytes
    key: str
    pid: int = 0
    address: str = ""
    registered: bool = False
    lease_id: int | None = None
    blocked: bool = False
    idle_since: float = 0.0
    dying: bool = False  # killed; its record goes when the exit is reported
    reaping: bool = False  # asked whether it may be ended (ReapIfIdle); not leased meanwhile


class WorkerPool:
    def __init__(self, session_dir: str, liveness_fd: int, on_event: Callable[[dict], None],
                 loop, log_dir: str, config: dict) -> None:
        self.workers: dict[bytes, WorkerRecord] = {}
        self.by_pid: dict[int, WorkerRecord] = {}
        self.idle: dict[str, deque[bytes]] = {}
        self._loop = loop
        self._on_event = on_event
        cmd_r, self._cmd_w = os.pipe()
        self._event_r, event_w = os.pipe()
        os.set_inheritable(self._cmd_w, False)
        os.set_inheritable(self._event_r, False)
        env = dict(os.environ)
        # One BLAS/OpenMP thread per task CPU, as in Ray, unless the user chose: the template
        # loads numpy with 1; a task with more CPUs raises it (worker/executor.py).
        blas_user_set = any(var in env for var in BLAS_VARS)
        for var in BLAS_VARS:
            env.setdefault(var, "1")
        self.template = process.spawn(
            "worker template",
            "asyncray._private.worker.template",
            {"cmd_fd": cmd_r, "event_fd": event_w, "liveness_fd": liveness_fd, "session_dir": session_dir,
             "log_dir": log_dir, "config": config, "blas_user_set": blas_user_set},
            log_path=os.path.join(log_dir, "template.log"),
            pass_fds=(cmd_r, event_w, liveness_fd),
            env=env,
        )
        os.close(cmd_r)
        os.close(event_w)
        os.set_blocking(self._cmd_w, False)
        self._cmd_buf = bytearray()
        self._writer_armed = False
        self._event_buf = b""
        loop.add_reader(self._event_r, self._read_events)

    def wait_template(self, timeout: float) -> None:
        self.template.wait_ready(timeout)

    def start(self, worker_id: bytes, key: str, job_id: int | None, runtime_env: Any, extra: dict) -> WorkerRecord:
        rec = WorkerRecord(worker_id, key)
        self.workers[worker_id] = rec
        cmd = {"worker_id": worker_id.hex(), "job_id": job_id, "runtime_env": runtime_env, **extra}
        self._cmd_buf += json.dumps(cmd).encode() + b"\n"
        self._write_cmds()
        return rec

    def _write_cmds(self) -> None:
        """Write queued fork commands without ever blocking the loop: the template writes its
        events to us while we write commands to it, and two full pipes written by blocked
        writers would deadlock (1,000 actors at once fill both)."""
        try:
            while self._cmd_buf:
                n = os.write(self._cmd_w, self._cmd_buf)
                del self._cmd_buf[:n]
        except BlockingIOError:
            pass
        except OSError:  # the template is gone; its exit is reported through the event pipe
            self._cmd_buf.clear()
        if self._cmd_buf and not self._writer_armed:
            self._writer_armed = True
            self._loop.add_writer(self._cmd_w, self._drain_cmds)

    def _drain_cmds(self) -> None:
        self._writer_armed = False
        self._loop.remove_writer(self._cmd_w)
        self._write_cmds()

    def _read_events(self) -> None:
        try:
            chunk = os.read(self._event_r, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._loop.remove_reader(self._event_r)
            self._on_event({"event": "template_exited"})
            return
        self._event_buf += chunk
        while b"\n" in self._event_buf:
            line, self._event_buf = self._event_buf.split(b"\n", 1)
            ev = json.loads(line)
            wid = bytes.fromhex(ev["worker_id"]) if ev.get("worker_id") else None
            rec = self.workers.get(wid) if wid else None
            if ev["event"] == "spawned" and rec is not None:
                rec.pid = ev["pid"]
                self.by_pid[rec.pid] = rec
            self._on_event(ev)

    def push_idle(self, rec: WorkerRecord) -> None:
        rec.lease_id = None
        rec.idle_since = time.monotonic()
        self.idle.setdefault(rec.key, deque()).append(rec.worker_id)

    def keep_idle(self, rec: WorkerRecord) -> None:
        """An idle worker stays: idle from now on (back in its queue if a lease request passed
        it over while it was being asked whether it could go)."""
        q = self.idle.setdefault(rec.key, deque())
        if rec.worker_id not in q:
            q.append(rec.worker_id)
        rec.idle_since = time.monotonic()

    def pop_idle(self, key: str, claim_prestarted: bool) -> WorkerRecord | None:
        """An idle worker for `key`; else, if allowed, a prestarted one, which `key` then claims."""
        for k in (key, PRESTARTED) if claim_prestarted else (key,):
            q = self.idle.get(k)
            while q:
                rec = self.workers.get(q.pop())
                if rec is not None and rec.lease_id is None and rec.registered and not rec.dying and not rec.reaping:
                    rec.key = key
                    return rec
        return None

    def remove(self, worker_id: bytes) -> WorkerRecord | None:
        rec = self.workers.pop(worker_id, None)
        if rec is not None:
            self.by_pid.pop(rec.pid, None)
            q = self.idle.get(rec.key)
            if q is not None:
                try:
                    q.remove(worker_id)
                except ValueError:
                    pass
        return rec

    def kill(self, rec: WorkerRecord) -> None:
        if rec.pid:
            try:
                os.kill(rec.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stale_idle(self, keep: int, timeout: float) -> list[WorkerRecord]:
        now = time.monotonic()
        idle = [self.workers[w] for q in self.idle.values() for w in q
                if w in self.workers and not self.workers[w].dying and not self.workers[w].reaping]
        idle.sort(key=lambda r: r.idle_since)
        excess = len(idle) - keep
        return [r for r in idle[: max(excess, 0)] if now - r.idle_since > timeout]

    def close(self) -> None:
        for rec in list(self.workers.values()):
            self.kill(rec)
        try:
            self._loop.remove_reader(self._event_r)
            if self._writer_armed:
                self._loop.remove_writer(self._cmd_w)
        except Exception:
            pass
        for fd in (self._cmd_w, self._event_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.template.stop(2.0)
