"""Run one task: rebuild the function and arguments, call, store the returns, capture errors.

Runs in the worker's main thread. Returns are serialised here too, so a value that cannot be
pickled becomes the task's error (a RayTaskError that is also a TypeError), never a lost reply.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import io
import os
import signal
import pickle
import sys
from typing import Any

from asyncray._private import ids, protocol as p, serialization
from asyncray._private.core.submitter import _Dep


class TaskContext:
    """What runs here now. Context variables, so threaded actors' threads and async actors'
    interleaved calls each see their own task."""

    actor: Any = None  # the ActorHost, in an actor's process
    placement_group: Any = None  # [pg_id, capture_child_tasks, bundle specs] of the task or actor running here

    def __init__(self) -> None:
        self._task = contextvars.ContextVar("asyncray_task", default=(None, ""))

    @property
    def task_id(self) -> bytes | None:
        return self._task.get()[0]

    @property
    def task_name(self) -> str:
        return self._task.get()[1]

    @task_name.setter
    def task_name(self, name: str) -> None:
        self._task.set((self.task_id, name))

    def enter(self, task_id: bytes, name: str) -> Any:
        return self._task.set((task_id, name))

    def leave(self, token: Any) -> None:
        self._task.reset(token)


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
    def __init__(self, rt: Any, queue: Any) -> None:
        self.rt = rt
        self.client = rt.client
        self.functions: dict[bytes, Any] = {}
        self.calls: dict[bytes, int] = {}
        self.driver_address = ""
        self.stdout = _Forward(self, 1)
        self.stderr = _Forward(self, 2)
        self.blas_threads = None if rt.blas_user_set else 1  # None: the user's choice, left alone
        self.current: bytes | None = None  # the task running now
        self.gpu_ids: list = []
        self.assigned: dict = {}
        self.actor: Any = None  # the ActorHost once this worker became an actor
        self.running: dict[bytes, Any] = {}  # async actor calls in flight (asyncio tasks)
        self.exit_requested: Any = None
        self.retired = False  # reached max_calls: waiting for the node to end us
        self.blocked = False  # the running task waits in get/wait
        self._block_lock = threading.Lock()
        self.queue = queue  # the main thread takes tasks and sync actor calls from here
        self.cancelled: set[bytes] = set()  # cancelled before or while running
        signal.signal(signal.SIGINT, self._on_sigint)

    # -- cancel (runtime thread) --------------------------------------------------------------
    def on_cancel(self, msg: p.CancelTask, peer: Any) -> None:
        """A queued task is skipped when its turn comes; a running one is interrupted."""
        self.cancelled.add(msg.task_id)
        if self.actor is not None:
            self.actor.cancel(msg, peer)
            return
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
            if self.exit_requested is not None:
                self.exit_requested()
            if item is None:
                return
            msg, peer = item
            kind = type(msg)
            if kind is p.PushActorTask:
                self.actor.run_sync(msg, peer)
                continue
            if kind is p.StartActor:
                self.start_actor(msg, peer)
                continue
            self._peer = peer
            if self.retired:
                self.rt.endpoint.call_threadsafe(peer.answer, p.TaskNotRun(msg.task_id))
                continue
            try:
                reply = self.execute(msg)
                if msg.max_calls:
                    n = self.calls[msg.fn_id] = self.calls.get(msg.fn_id, 0) + 1
                    # The owner ends this worker through the node when it reads the reply; we
                    # must not exit first (the reply could die with us) nor run anything more.
                    self.retired = n >= msg.max_calls
                    reply = reply._replace(worker_exiting=self.retired)
            except BaseException as e:  # a bug of ours: still answer, never hang the caller
                from asyncray.exceptions import RaySystemError

                reply = failure_reply(msg.task_id, msg.num_returns,
                                      RaySystemError(f"asyncray failed to run task {msg.name}: {e!r}"))
            self.rt.endpoint.call_threadsafe(peer.answer, reply)

    # -- actors ---------------------------------------------------------------------------------
    def start_actor(self, msg: p.StartActor, peer: Any) -> None:
        """This worker becomes the actor: construct it, then serve its calls (for an async
        actor, on an event loop in this thread, forever)."""
        from asyncray._private.worker.actor_host import ActorHost

        host = ActorHost(self, msg, peer)
        self.actor = context.actor = host
        if not host.start(msg):
            # The constructor raised: the head, told so, ends this worker through the node. Exiting
            # here could lose that message, or let the node's death notice reach the head first.
            self.retired = True
            return
        if host.is_async:
            host.serve_async()

    def on_actor_call(self, msg: p.PushActorTask, peer: Any) -> None:
        """Runtime thread: a method call arrived."""
        self.actor.dispatch(msg, peer, self.queue)

    def on_push(self, msg: p.PushTask, peer: Any) -> None:
        """Runtime thread: a task arrived. While the running task is blocked in get, it goes
        straight back to its owner (it may be what the running task waits for)."""
        with self._block_lock:
            if not self.blocked:
                self.queue.put((msg, peer))
                return
        peer.answer(p.TaskNotRun(msg.task_id))

    def set_blocked(self, blocked: bool) -> None:
        """Main thread: the running task blocks in get/wait (or is back from it)."""
        if self.actor is not None:
            return
        with self._block_lock:
            self.blocked = blocked
            if blocked:
                self.give_back_queued()

    def give_back_queued(self) -> None:
        """Tasks queued behind the running one could be what it waits for: they go back to
        their owners to run elsewhere (pipelining must never deadlock a task that waits on a
        sibling)."""
        self._answer_queued(p.PushTask, lambda msg: p.TaskNotRun(msg.task_id))

    def fail_queued(self, make_reply: Any) -> None:
        """exit_actor(): the calls queued behind the exiting one fail too."""
        self._answer_queued(p.PushActorTask, make_reply)

    def _answer_queued(self, kind: type, make_reply: Any) -> None:
        """Take every queued `kind` message out of the queue and answer it with make_reply(msg)."""
        keep = []
        while True:
            try:
                item = self.queue.get_nowait()
            except Exception:
                break
            if item is not None and type(item[0]) is kind:
                self.rt.endpoint.call_threadsafe(item[1].answer, make_reply(item[0]))
            else:
                keep.append(item)
        for item in keep:
            self.queue.put(item)

    def wake(self) -> None:
        self.queue.put(None)

    def join_job(self, job_id: int, driver_address: str) -> None:
        """First task of a job in this worker: take the job's namespace and import path."""
        self.client.set_job(job_id)
        self.client.driver_address = self.driver_address = driver_address
        if not driver_address:
            return
        info = self.client.call(driver_address, lambda rid: p.GetJobInfo(rid), timeout=30)
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
        return failure_reply(msg.task_id, msg.num_returns, TaskCancelledError(msg.task_id.hex()))

    def _execute(self, msg: p.PushTask) -> p.TaskReply:
        if msg.job_id != self.client.job_id or not self.driver_address:
            self.join_job(msg.job_id, msg.driver_address)
        if self.blas_threads is not None:
            self._limit_blas(max(1, int(msg.cpus)))
        self.assign(msg.cpus, msg.gpu_ids)
        context.placement_group = msg.placement_group
        return self._run(msg, msg.name, lambda: self._function(msg), self._peer)

    def assign(self, cpus: float, gpu_ids: list) -> None:
        """What the running task (or this actor) holds; GPUs become CUDA_VISIBLE_DEVICES, as in Ray."""
        self.gpu_ids = list(gpu_ids)
        self.assigned = {"CPU": cpus} if cpus else {}
        if gpu_ids:
            self.assigned["GPU"] = float(len(gpu_ids))
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
        else:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)

    # -- one call, shared by tasks and actor methods ---------------------------------------------
    def resolve_args(self, args_blob: bytes, deps: list, borrows: list) -> tuple[list, dict]:
        """Arguments with top-level refs replaced by their values (registering borrows)."""
        client = self.client
        args, kwargs = client.value([p.INLINE, args_blob], borrows_done=borrows)
        if deps:
            values = [client.value(pl, borrows_done=borrows) for pl in deps]
            args = [values[a.index] if type(a) is _Dep else a for a in args]
            kwargs = {k: values[v.index] if type(v) is _Dep else v for k, v in kwargs.items()}
        return args, kwargs

    def _run(self, msg: Any, name: str, target: Any, peer: Any) -> p.TaskReply:
        """Call target()(*args) and turn the outcome into the reply (sync callables)."""
        token = context.enter(msg.task_id, name)
        borrows: list = []  # registrations as borrower of refs in the arguments
        try:
            fn = target()
            args, kwargs = self.resolve_args(msg.args_blob, msg.deps, borrows)
            result = fn(*args, **kwargs)
            return self._returns(msg, name, result, borrows, peer)
        except Exception as e:
            return self._error_reply(msg, name, e, peer)
        finally:
            _confirm(borrows)  # on every path, streams and errors included, before the reply
            context.leave(token)
            self._flush_output()

    async def _run_async(self, msg: Any, name: str, method: Any, peer: Any) -> p.TaskReply:
        token = context.enter(msg.task_id, name)
        borrows: list = []
        try:
            args, kwargs = self.resolve_args(msg.args_blob, msg.deps, borrows)
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = await result
            if inspect.isasyncgen(result):
                return await self._stream_async(msg, name, result, peer)
            return self._returns(msg, name, result, borrows, peer)
        except Exception as e:
            return self._error_reply(msg, name, e, peer)
        finally:
            if borrows:  # waiting on thread events must not block the actor's event loop
                await asyncio.get_running_loop().run_in_executor(None, _confirm, borrows)
            context.leave(token)
            self._flush_output()

    def run_call(self, msg: p.PushActorTask, method: Any, name: str, peer: Any) -> p.TaskReply:
        return self._run(msg, name, lambda: method, peer)

    async def run_call_async(self, msg: p.PushActorTask, method: Any, name: str, peer: Any) -> p.TaskReply:
        return await self._run_async(msg, name, method, peer)

    def _returns(self, msg: Any, name: str, result: Any, borrows: list, peer: Any) -> p.TaskReply:
        if msg.num_returns == p.STREAMING:
            return self._stream(msg, name, result, peer)
        n = max(msg.num_returns, 1)
        return_ids = [ids.object_id(msg.task_id, i + 1) for i in range(n)]
        if msg.num_returns == 0:
            values_out = [None]
        elif msg.num_returns == 1:
            values_out = [result]
        else:
            values_out = _split(result, msg.num_returns, name)
        returns, nested = [], []
        try:
            for rid, v in zip(return_ids, values_out):
                payload, inner = self._store(rid, v, msg.owner_address)
                returns.append(payload)
                nested.append(inner)
        except BaseException:
            self._discard(return_ids, returns)
            raise
        return p.TaskReply(msg.task_id, returns, False, False, nested if any(nested) else [])

    def _error_reply(self, msg: Any, name: str, e: BaseException, peer: Any) -> p.TaskReply:
        if msg.num_returns == p.STREAMING:
            self._send_error_item(msg, 1, name, e, peer)
            return p.TaskReply(msg.task_id, [[p.END, 1]], True, False, [])
        return failure_reply(msg.task_id, msg.num_returns, _task_error(name, e), app_error=True)

    def _flush_output(self) -> None:
        for s in (self.stdout, self.stderr):
            if s._buf:
                lines, s._buf = [s._buf], ""
                self.forward_lines(lines)

    def _stream(self, msg: Any, name: str, result: Any, peer: Any) -> p.TaskReply:
        """Send each item to the owner as soon as it is yielded; an error is the last item."""
        if not inspect.isgenerator(result):
            raise TypeError(f"{name} has num_returns='streaming' but returned a "
                            f"{type(result).__name__}, not a generator.")
        n = 0
        try:
            for item in result:
                n += 1
                self._send_item(msg, n, item, peer)
        except Exception as e:
            n += 1
            self._send_error_item(msg, n, name, e, peer)
        return p.TaskReply(msg.task_id, [[p.END, n]], False, False, [])

    async def _stream_async(self, msg: Any, name: str, result: Any, peer: Any) -> p.TaskReply:
        n = 0
        try:
            async for item in result:
                n += 1
                self._send_item(msg, n, item, peer)
        except Exception as e:
            n += 1
            self._send_error_item(msg, n, name, e, peer)
        return p.TaskReply(msg.task_id, [[p.END, n]], False, False, [])

    def _send_item(self, msg: Any, n: int, item: Any, peer: Any) -> None:
        # Items travel the reply's path, so they reach the owner before the final TaskReply.
        payload, inner = self._store(ids.object_id(msg.task_id, n), item, msg.owner_address)
        self.rt.endpoint.call_threadsafe(peer.answer, p.GeneratorItem(msg.task_id, n, payload, inner))

    def _send_error_item(self, msg: Any, n: int, name: str, e: BaseException, peer: Any) -> None:
        payload = [p.ERROR, serialization.dumps_exception(_task_error(name, e))]
        self.rt.endpoint.call_threadsafe(peer.answer, p.GeneratorItem(msg.task_id, n, payload, []))

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


def failure_reply(task_id: bytes, num_returns: int, exc: BaseException, app_error: bool = False) -> p.TaskReply:
    """A reply in which every return of the task raises `exc`."""
    payload = [p.ERROR, serialization.dumps_exception(exc)]
    return p.TaskReply(task_id, [payload] * max(num_returns, 1), app_error, False, [])


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
