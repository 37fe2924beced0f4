"""Run one task: rebuild the function and arguments, call, store the returns, capture errors.

Runs in the worker's main thread. Returns are serialised here too, so a value that cannot be
pickled becomes the task's error (a RayTaskError that is also a TypeError), never a lost reply.
"""
from __future__ import annotations

import inspect
import io
import os
import signal
import pickle
import sys
import threading
from typing import Any

from asyncray._private import ids, protocol as p, serialization
from asyncray._private.core.submitter import _Dep


class TaskContext(threading.local):
    task_id: bytes | None = None
    task_name: str = ""


context = TaskContext()


class _Forward(io.TextIOBase):
    """sys.stdout/err of a worker: to the log file, and each line to the job's driver."""

    def __init__(self, executor: "Executor", fd: int) -> None:
        self._ex = executor
        self._fd = fd
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        os.write(self._fd, s.encode(errors="replace"))
        self._buf += s
        if "\n" in self._buf:
            *lines, self._buf = self._buf.split("\n")
            self._ex.forward_lines(lines)
        return len(s)

    def flush(self) -> None:
        pass


class Executor:
    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.client = rt.client
        self.functions: dict[bytes, Any] = {}
        self.calls: dict[bytes, int] = {}
        self.driver_address = ""
        self.stdout = _Forward(self, 1)
        self.stderr = _Forward(self, 2)
        self.blas_threads = None if rt.blas_user_set else 1  # None: the user's choice, left alone
        self.current: bytes | None = None  # the task running now
        self.cancelled: set[bytes] = set()  # cancelled before or while running
        signal.signal(signal.SIGINT, self._on_sigint)

    # -- cancel (runtime thread) --------------------------------------------------------------
    def on_cancel(self, msg: p.CancelTask, peer: Any) -> None:
        """A queued task is skipped when its turn comes; a running one is interrupted."""
        self.cancelled.add(msg.task_id)
        if msg.task_id != self.current:
            return
        if msg.recursive:
            for child in self.client.submitter.children or ():
                self.client.submitter.cancel_task(child, msg.force, True)
        if msg.force:
            self.rt.endpoint.flush()  # the children's cancels leave before we die
            os._exit(1)
        # SIGINT interrupts the main thread even inside time.sleep or a blocking read,
        # where an asynchronous exception would wait for the call to return.
        os.kill(os.getpid(), signal.SIGINT)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.current is not None and self.current in self.cancelled:
            raise KeyboardInterrupt

    def forward_lines(self, lines: list[str]) -> None:
        if self.driver_address and lines:
            self.rt.endpoint.call_threadsafe(
                self.rt.endpoint.send, self.driver_address, p.LogLines(os.getpid(), context.task_name, lines))

    def serve(self, tasks: Any) -> None:
        while True:
            item = tasks.get()
            if item is None:
                return
            msg, peer = item
            self._peer = peer
            exiting = False
            try:
                reply = self.execute(msg)
                if msg.max_calls:
                    n = self.calls[msg.fn_id] = self.calls.get(msg.fn_id, 0) + 1
                    exiting = n >= msg.max_calls
                    reply = reply._replace(worker_exiting=exiting)
            except BaseException as e:  # a bug of ours: still answer, never hang the caller
                from asyncray.exceptions import RaySystemError

                err = RaySystemError(f"asyncray failed to run task {msg.name}: {e!r}")
                reply = p.TaskReply(msg.task_id, [[p.ERROR, serialization.dumps_exception(err)]] * max(msg.num_returns, 1),
                                    False, False, [])
            self.rt.endpoint.call_threadsafe(peer.answer, reply)
            if exiting:
                self.rt.loop_thread.call(self.rt.endpoint.flush)
                os._exit(0)

    def _join_job(self, msg: p.PushTask) -> None:
        """First task of a job in this worker: take the job's namespace and import path."""
        self.client.set_job(msg.job_id)
        if not msg.driver_address:
            return
        info = self.client.call(msg.driver_address, lambda rid: p.GetJobInfo(rid), timeout=30)
        self.rt.namespace = info.namespace
        for entry in reversed(info.sys_path):
            if entry not in sys.path:
                sys.path.insert(1, entry)

    def _function(self, msg: p.PushTask) -> Any:
        fn = self.functions.get(msg.fn_id)
        if fn is None:
            if msg.fn_blob is None:
                raise RuntimeError(f"function of task {msg.name} was never sent to this worker")
            fn = self.functions[msg.fn_id] = pickle.loads(msg.fn_blob)
        return fn

    def execute(self, msg: p.PushTask) -> p.TaskReply:
        if msg.task_id in self.cancelled:
            return self._cancelled_reply(msg)
        self.current = msg.task_id
        self.client.submitter.children = []
        try:
            return self._execute(msg)
        except KeyboardInterrupt:
            if msg.task_id in self.cancelled:
                return self._cancelled_reply(msg)
            raise
        finally:
            self.current = None
            self.client.submitter.children = None
            self.cancelled.discard(msg.task_id)

    def _limit_blas(self, n: int) -> None:
        """BLAS/OpenMP threads = the task's CPUs (two 1-CPU SVDs must not fight over 2 cores)."""
        if n == self.blas_threads:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
        from asyncray._private.node.worker_pool import BLAS_VARS

        for var in BLAS_VARS:  # for libraries loaded later and for subprocesses
            os.environ[var] = str(n)
        self.blas_threads = n

    def _cancelled_reply(self, msg: p.PushTask) -> p.TaskReply:
        from asyncray.exceptions import TaskCancelledError

        self.cancelled.discard(msg.task_id)
        err = [p.ERROR, serialization.dumps_exception(TaskCancelledError(msg.task_id.hex()))]
        return p.TaskReply(msg.task_id, [err] * max(msg.num_returns, 1), False, False, [])

    def _execute(self, msg: p.PushTask) -> p.TaskReply:
        client = self.client
        if msg.job_id != client.job_id or not self.driver_address:
            self._join_job(msg)
        client.driver_address = self.driver_address = msg.driver_address
        n = max(msg.num_returns, 1)
        return_ids = [ids.object_id(msg.task_id, i + 1) for i in range(n)]
        context.task_id = msg.task_id
        context.task_name = msg.name
        if self.blas_threads is not None:
            self._limit_blas(max(1, int(msg.cpus)))
        try:
            fn = self._function(msg)
            borrows: list = []  # registrations as borrower of refs inside the arguments
            args, kwargs = client.value([p.INLINE, msg.args_blob], borrows_done=borrows)
            if msg.deps:
                values = [client.value(pl, borrows_done=borrows) for pl in msg.deps]
                args = [values[a.index] if type(a) is _Dep else a for a in args]
                kwargs = {k: values[v.index] if type(v) is _Dep else v for k, v in kwargs.items()}
            result = fn(*args, **kwargs)
            if msg.num_returns == p.STREAMING:
                return self._stream(msg, result)
            if msg.num_returns == 0:
                values_out = [None]
            elif msg.num_returns == 1:
                values_out = [result]
            else:
                values_out = _split(result, msg.num_returns, msg.name)
            returns, nested = [], []
            try:
                for rid, v in zip(return_ids, values_out):
                    payload, inner = self._store(rid, v, msg.owner_address)
                    returns.append(payload)
                    nested.append(inner)
            except BaseException:
                self._discard(return_ids, returns)
                raise
            _confirm(borrows)
            return p.TaskReply(msg.task_id, returns, False, False, nested if any(nested) else [])
        except Exception as e:
            payload = [p.ERROR, serialization.dumps_exception(_task_error(msg.name, e))]
            return p.TaskReply(msg.task_id, [payload] * n, True, False, [])
        finally:
            context.task_id = None
            for s in (self.stdout, self.stderr):
                if s._buf:
                    lines, s._buf = [s._buf], ""
                    self.forward_lines(lines)

    def _stream(self, msg: p.PushTask, result: Any) -> p.TaskReply:
        """Send each item to the owner as soon as it is yielded; an error is the last item."""
        if not inspect.isgenerator(result):
            raise TypeError(f"Task {msg.name} has num_returns='streaming' but returned a "
                            f"{type(result).__name__}, not a generator.")
        # Items travel the reply's path, so they reach the owner before the final TaskReply.
        send = self.rt.endpoint.call_threadsafe
        answer = self._peer.answer
        n = 0
        try:
            for item in result:
                n += 1
                payload, inner = self._store(ids.object_id(msg.task_id, n), item, msg.owner_address)
                send(answer, p.GeneratorItem(msg.task_id, n, payload, inner))
        except Exception as e:
            n += 1
            payload = [p.ERROR, serialization.dumps_exception(_task_error(msg.name, e))]
            send(answer, p.GeneratorItem(msg.task_id, n, payload, []))
        return p.TaskReply(msg.task_id, [[p.END, n]], False, False, [])

    def _discard(self, return_ids: list, stored: list) -> None:
        """A later return failed to store: the task fails, so free the ones already stored."""
        dead = [rid for rid, pl in zip(return_ids, stored) if pl[0] == p.SHM]
        if dead:
            endpoint = self.rt.endpoint
            endpoint.call_threadsafe(endpoint.send, self.client.node_address, p.FreeObjects(dead))

    def _store(self, oid: bytes, value: Any, owner: str) -> tuple[list, list]:
        """Serialise a return value; refs inside it are held for it (see references.py)."""
        ser = serialization.serialize(value)
        nested = self.client.hold_contained(oid, ser.refs)
        return self.client._store_serialized(oid, ser, owner), nested


def _confirm(borrows: list) -> None:
    """Before replying, the owners of refs we received must know we borrow them: the caller
    drops its own hold on them when it sees our reply."""
    for done in borrows:
        done.wait(30)


def _split(result: Any, k: int, name: str) -> list:
    try:
        values = list(result)
    except TypeError:
        raise ValueError(f"Task {name} declared num_returns={k} but returned a non-iterable "
                         f"{type(result).__name__}.") from None
    if len(values) != k:
        raise ValueError(f"Task {name} declared num_returns={k} but returned {len(values)} values.")
    return values


def _task_error(name: str, exc: BaseException) -> BaseException:
    from asyncray.exceptions import RayTaskError

    tb = serialization.format_user_traceback(exc)
    err = RayTaskError(name, tb, exc, pid=os.getpid())
    try:
        return err.as_instanceof_cause()
    except Exception:
        return err
