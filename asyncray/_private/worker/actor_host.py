"""Host one actor in this worker process: construct it, then run its method calls.

Three shapes, as in Ray:
- a default (sync) actor runs calls one at a time, in arrival order, in the main thread (a
  caller sends its calls in submission order on one connection, so arrival order is it);
- a threaded actor (sync, max_concurrency > 1) runs up to that many calls at once on a thread
  pool, one pool per concurrency group;
- an async actor (any `async def` method) runs every call on one event loop in the main
  thread, interleaving at `await`, bounded by a semaphore per concurrency group (default 1000).
Errors in a method fail that call only. exit_actor() fails the exiting call and everything
queued behind it with ActorDiedError, tells the head, runs atexit handlers and exits.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import os
import threading
from typing import Any

from asyncray._private import protocol as p, serialization
from asyncray._private.worker.executor import context, failure_reply


class ActorExit(BaseException):
    """Raised by exit_actor() inside a method; BaseException so user `except Exception` misses it."""


class ActorHost:
    def __init__(self, executor: Any, msg: p.StartActor, head: Any) -> None:
        self.ex = executor
        self.rt = executor.rt
        self.client = executor.client
        self.actor_id = msg.actor_id
        self.spec = msg.spec
        self.head = head  # Peer: answers go back to the head
        self.instance: Any = None
        self.is_async = bool(msg.spec.get("is_async"))
        self.max_concurrency = msg.spec.get("max_concurrency") or (1000 if self.is_async else 1)
        self.groups: dict[str, int] = dict(msg.spec.get("concurrency_groups") or {})
        self.method_groups: dict[str, str | None] = {
            name: meta.get("concurrency_group") for name, meta in msg.spec.get("methods", {}).items()}
        self.pools: dict[str | None, concurrent.futures.ThreadPoolExecutor] = {}
        self.threads: dict[bytes, int] = {}  # running sync call -> its thread, for cancel
        self.answered: set[bytes] = set()  # cancelled before they ran: skip them
        self.semaphores: dict[str | None, asyncio.Semaphore] = {}
        # Created now, run later by serve_async: calls may arrive right after ActorStarted.
        self.loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop() if self.is_async else None
        self.exiting = False
        self.name = msg.spec.get("name") or ""

    @property
    def threaded(self) -> bool:
        return not self.is_async and (self.max_concurrency > 1 or bool(self.groups))

    # -- construction (main thread) -------------------------------------------------------------
    def start(self, msg: p.StartActor) -> bool:
        """Construct the instance; report to the head. False if the constructor raised."""
        spec = msg.spec
        self.ex.join_job(spec.get("job_id", 0), spec.get("driver_address", ""))
        self.ex.assign(0, spec.get("gpu_ids") or [])
        context.task_name = f"{spec.get('class_name')}.__init__"
        context.actor = self
        context.placement_group = spec.get("placement_group")
        try:
            import pickle

            cls = pickle.loads(spec["class_blob"])
            borrows: list = []
            args, kwargs = self.ex.resolve_args(spec["args_blob"], spec.get("deps") or [], borrows)
            self.instance = cls.__new__(cls)
            self.instance.__init__(*args, **kwargs)
            error = None
        except BaseException as e:  # noqa: BLE001 - the constructor's error is the actor's fate
            from asyncray._private.worker.executor import _task_error

            error = serialization.dumps_exception(_task_error(f"{spec.get('class_name')}.__init__", e))
        self._send(self.head.answer, p.ActorStarted(self.actor_id, msg.incarnation, error))
        return error is None

    # -- calls (the runtime thread hands them over) ---------------------------------------------
    def dispatch(self, msg: p.PushActorTask, peer: Any, main_queue: Any) -> None:
        """Runtime thread: route a call to where it runs."""
        if self.is_async:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._spawn, msg, peer)
        elif self.threaded:
            group = self._group(msg)
            pool = self.pools.get(group)
            if pool is None:
                size = self.groups.get(group, self.max_concurrency) if group else self.max_concurrency
                pool = self.pools[group] = concurrent.futures.ThreadPoolExecutor(size, f"actor-{group or 'default'}")
            pool.submit(self.run_sync, msg, peer)
        else:
            main_queue.put((msg, peer))

    def _group(self, msg: p.PushActorTask) -> str | None:
        return msg.concurrency_group or self.method_groups.get(msg.method)

    def run_sync(self, msg: p.PushActorTask, peer: Any) -> None:
        if self.exiting:
            return self._reply(peer, self._died_reply(msg))
        if msg.task_id in self.answered:  # cancelled while queued: already answered, never runs
            self.answered.discard(msg.task_id)
            return
        self.threads[msg.task_id] = threading.get_ident()
        try:
            reply = self.ex.run_call(msg, self._method(msg), self._name(msg), peer)
        except ActorExit:
            return self._exit(msg, peer)
        except KeyboardInterrupt:  # ray.cancel reached the running call
            reply = self._cancelled_reply(msg.task_id, msg.num_returns)
        finally:
            self.threads.pop(msg.task_id, None)
            self.ex.cancelled.discard(msg.task_id)
        self._reply(peer, reply)

    def cancel(self, msg: p.CancelTask, peer: Any) -> None:
        """Runtime thread: cancel a call. A queued one is answered now (TaskCancelledError) and
        skipped when its turn comes, so the caller's next call is not delayed by it. A running
        one is interrupted (beyond Ray for sync and threaded actors): an async call gets
        CancelledError at its current await; a sync or threaded call gets KeyboardInterrupt
        raised in its thread, which lands at the next Python bytecode (a call blocked inside C
        code is interrupted when it returns to Python)."""
        task_id = msg.task_id
        self.ex.cancelled.discard(task_id)
        task = self.ex.running.get(task_id)
        if task is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(task.cancel)
            return
        ident = self.threads.get(task_id)
        if ident is not None:
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
            return
        self.answered.add(task_id)
        peer.answer(self._cancelled_reply(task_id, 1))

    @staticmethod
    def _cancelled_reply(task_id: bytes, num_returns: int) -> p.TaskReply:
        from asyncray.exceptions import TaskCancelledError

        return failure_reply(task_id, num_returns, TaskCancelledError(task_id.hex()))

    def _name(self, msg: p.PushActorTask) -> str:
        return f"{self.spec.get('class_name')}.{msg.method}"

    def _method(self, msg: p.PushActorTask) -> Any:
        if msg.method == "__ray_terminate__":
            return exit_actor
        return getattr(self.instance, msg.method)

    # -- async actors (main thread runs this loop) ----------------------------------------------
    def serve_async(self) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        threshold = self.rt.config.blocked_loop_report_s
        if threshold > 0:
            LoopWatch(self.loop, threshold, self.spec.get("class_name", "actor"), self.ex).start()
        self.semaphores[None] = asyncio.Semaphore(self.max_concurrency)
        for group, size in self.groups.items():
            self.semaphores[group] = asyncio.Semaphore(size)
        self.loop.run_forever()

    def _spawn(self, msg: p.PushActorTask, peer: Any) -> None:
        task = self.loop.create_task(self._run_async(msg, peer))
        self.ex.running[msg.task_id] = task

    async def _run_async(self, msg: p.PushActorTask, peer: Any) -> None:
        sem = self.semaphores.get(self._group(msg)) or self.semaphores[None]
        if msg.task_id in self.answered:
            self.answered.discard(msg.task_id)
            return
        try:
            async with sem:  # a cancel may land here too, while the call waits for its turn
                if self.exiting:
                    return self._reply(peer, self._died_reply(msg))
                reply = await self.ex.run_call_async(msg, self._method(msg), self._name(msg), peer)
            self._reply(peer, reply)
        except ActorExit:
            self._exit(msg, peer)
        except asyncio.CancelledError:  # ray.cancel: the call saw CancelledError inside
            self._reply(peer, self._cancelled_reply(msg.task_id, msg.num_returns))
        finally:
            self.ex.running.pop(msg.task_id, None)

    # -- replies and exit -----------------------------------------------------------------------
    def _send(self, fn: Any, msg: Any) -> None:
        self.rt.endpoint.call_threadsafe(fn, msg)

    def _reply(self, peer: Any, reply: p.TaskReply) -> None:
        self._send(peer.answer, reply)

    def _died_reply(self, msg: p.PushActorTask) -> p.TaskReply:
        from asyncray.exceptions import ActorDiedError

        return failure_reply(msg.task_id, msg.num_returns, ActorDiedError(
            f"The actor {self.spec.get('class_name')} ({self.actor_id.hex()}) exited: it called exit_actor(), so "
            "this call did not run."))

    def _exit(self, msg: p.PushActorTask, peer: Any) -> None:
        self.exiting = True
        self._reply(peer, self._died_reply(msg))
        self._send(self.head.answer, p.ActorExited(self.actor_id))

        def finish() -> None:
            self.rt.loop_thread.call(self.rt.endpoint.flush)
            atexit._run_exitfuncs()
            os._exit(0)

        if threading.current_thread() is threading.main_thread():
            self.ex.fail_queued(self._died_reply)
            finish()
        else:  # a pool thread: the main thread waits in its queue; wake it to exit
            self.ex.exit_requested = finish
            self.ex.wake()


class LoopWatch(threading.Thread):
    """Beyond Ray: report, by name, a method that blocks an async actor's event loop (Ray
    freezes silently). While calls are in flight it posts a heartbeat to the loop every
    `threshold` seconds; a heartbeat not run in time means the loop is stuck in one call, whose
    innermost user frame is logged once per episode. Idle actors are not watched (no CPU)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float, class_name: str, ex: Any) -> None:
        super().__init__(name="asyncray-loop-watch", daemon=True)
        self.loop, self.threshold, self.class_name, self.ex = loop, threshold, class_name, ex
        self.loop_thread = threading.main_thread().ident

    def run(self) -> None:
        import logging
        import sys
        import time

        log = logging.getLogger("asyncray.actor")
        while True:
            if not self.ex.running:
                time.sleep(self.threshold)  # nothing in flight: nothing can block the loop
                continue
            beat = threading.Event()
            try:
                self.loop.call_soon_threadsafe(beat.set)
            except RuntimeError:
                return
            if beat.wait(self.threshold):
                time.sleep(self.threshold / 2)
                continue
            frame = sys._current_frames().get(self.loop_thread)
            where = _user_frame(frame)
            log.warning("actor %s: %s has blocked the event loop for more than %.2f s; every other call waits. "
                        "Make it `async def` and await instead of blocking, or move the blocking work to a "
                        "thread (await asyncio.to_thread(...)).", self.class_name, where, self.threshold)
            beat.wait()  # one report per blocking episode


def _user_frame(frame: Any) -> str:
    """The innermost frame outside asyncio and the runtime: the method that blocks."""
    found = "a method"
    while frame is not None:
        name = frame.f_code.co_filename
        if "/asyncio/" not in name and "/asyncray/_private/" not in name and "threading.py" not in name:
            found = f"{frame.f_code.co_name} ({os.path.basename(name)}:{frame.f_lineno})"
            break
        frame = frame.f_back
    return found


def exit_actor() -> None:
    """End the current actor from inside one of its methods (Ray's ray.actor.exit_actor)."""
    if getattr(context, "actor", None) is None:
        raise TypeError("exit_actor API is called on a non-actor worker: it only works inside an actor's method.")
    raise ActorExit()


def is_async_class(cls: type) -> bool:
    return any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
               for _, m in inspect.getmembers(cls, predicate=inspect.isfunction))
