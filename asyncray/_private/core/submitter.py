"""TaskSubmitter: an owner's side of tasks, from `.remote()` to the results.

It serialises arguments in the caller's thread, waits for ObjectRef arguments, queues specs
per function and shape (resources, runtime_env), leases workers from the node manager, pushes
tasks straight to them (pipelined when short), and turns replies into results: retries on
worker death or retryable errors, streams generator items, and cancels. Everything after
`submit_task` runs in the runtime thread; results go through the CoreClient's object table.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from asyncray._private import ids, protocol as p, serialization
from asyncray._private.core.common import Entry, IdRef, call_in, peer_error, retryable
from asyncray._private.core.leases import Lease, ShapeQueue
from asyncray._private.scheduling.strategy import spillback_strategy
from asyncray._private.transport.sockets import Peer

logger = logging.getLogger("asyncray")


class _Dep:
    """Placeholder for a top-level ObjectRef argument, replaced by its value in the worker."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return _Dep, (self.index,)


class TaskSpec:
    __slots__ = ("task_id", "name", "fn_id", "fn_blob", "args_blob", "dep_refs", "dep_payloads", "num_returns",
                 "return_ids", "queue_key", "shape", "runtime_env", "retries_left", "retry_exceptions",
                 "single", "waiting", "pushed_at", "cpus", "max_calls", "cancelled", "nested_refs",
                 "placement_group", "strategy")


class FunctionDescriptor:
    """A remote function as the client sees it: pickled once per process, sent once per worker."""

    __slots__ = ("fn_id", "blob", "name")

    def __init__(self, fn: Callable) -> None:
        self.blob = serialization.dumps_function(fn)
        self.fn_id = ids.random_id(16)
        self.name = getattr(fn, "__qualname__", getattr(fn, "__name__", "task"))


class TaskSubmitter:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.endpoint = client.endpoint
        self.config = client.config
        self.lock = client.lock
        self.objects = client.objects
        self._queues: dict[tuple, ShapeQueue] = {}
        self._lease_of_request: dict[int, ShapeQueue] = {}
        self._task_lease: dict[bytes, tuple[ShapeQueue, Lease]] = {}
        # Every task we own that has not finished, for cancel(); and the tasks submitted by the
        # task this worker is running (for recursive cancel).
        self._specs: dict[bytes, TaskSpec] = {}
        self.children: list[bytes] | None = None
        # Streaming generator tasks we own: task id -> ids of items we hold a ref on for the consumer.
        self._streams: dict[bytes, set[bytes]] = {}
        self._stream_seen: dict[bytes, int] = {}  # highest item index delivered, per stream

    def submit_task(self, fn: FunctionDescriptor, args: tuple, kwargs: dict, *, num_returns: int,
                    shape: dict[str, float], runtime_env: Any, max_retries: int, retry_exceptions: Any,
                    max_calls: int, name: str | None = None, strategy: Any = None,
                    placement_group: Any = None) -> list:
        from asyncray.object_ref import ObjectRef

        spec = TaskSpec()
        spec.task_id = task_id = self.client.task_ids.next_task_id()
        spec.name = name or fn.name
        spec.fn_id = fn.fn_id
        spec.fn_blob = fn.blob
        spec.args_blob, spec.dep_refs, spec.nested_refs = self._serialize_args(args, kwargs)
        spec.num_returns = num_returns
        streaming = num_returns == p.STREAMING
        spec.return_ids = [] if streaming else [ids.object_id(task_id, i + 1) for i in range(max(num_returns, 1))]
        spec.shape = shape
        spec.cpus = shape.get("CPU", 0.0)
        spec.runtime_env = runtime_env
        spec.queue_key = (fn.fn_id, tuple(sorted(shape.items())), repr(runtime_env), max_calls > 0, repr(strategy))
        spec.placement_group = placement_group
        spec.strategy = strategy
        spec.retries_left = max_retries
        spec.retry_exceptions = retry_exceptions
        spec.single = max_calls > 0
        spec.max_calls = max_calls
        spec.dep_payloads = None
        spec.cancelled = False
        children = self.children
        if children is not None:
            children.append(task_id)
        with self.lock:
            for rid in spec.return_ids:
                self.objects[rid] = Entry(owned=True)
        if streaming:
            from asyncray.object_ref import ObjectRefGenerator

            self._streams[task_id] = set()
            gen = ObjectRefGenerator(task_id, self)
            self.endpoint.call_threadsafe(self._submit, spec)
            return [gen]
        refs = [ObjectRef(rid, self.client.address, self.client) for rid in spec.return_ids]
        self.endpoint.call_threadsafe(self._submit, spec)
        return refs

    def _serialize_args(self, args: tuple, kwargs: dict) -> tuple[bytes, list, list]:
        from asyncray.object_ref import ObjectRef

        deps: list = []
        if any(type(a) is ObjectRef for a in args) or any(type(v) is ObjectRef for v in kwargs.values()):
            def sub(a: Any) -> Any:
                if type(a) is ObjectRef:
                    deps.append(a)
                    return _Dep(len(deps) - 1)
                return a

            args = tuple(sub(a) for a in args)
            kwargs = {k: sub(v) for k, v in kwargs.items()}
        try:
            ser = serialization.serialize((args, kwargs))
        except TypeError:
            self._raise_arg_error(args, kwargs)
            raise
        if ser.size > self.config.inline_limit:
            # Large values go to the store once and travel as refs, as in Ray.
            def big(a: Any) -> Any:
                if type(a) is _Dep:
                    return a
                s = serialization.serialize(a)
                if s.size > self.config.inline_limit // 4:
                    deps.append(self.client.put(a))
                    return _Dep(len(deps) - 1)
                return a

            args = tuple(big(a) for a in args)
            kwargs = {k: big(v) for k, v in kwargs.items()}
            ser = serialization.serialize((args, kwargs))
        # Refs nested in the arguments stay alive with the spec until the task is done; the
        # worker registers itself as their borrower before it replies.
        return ser.to_bytes(), deps, ser.refs

    @staticmethod
    def _raise_arg_error(args: tuple, kwargs: dict) -> None:
        for i, a in enumerate(args):
            try:
                serialization.serialize(a)
            except TypeError as e:
                raise TypeError(f"Argument {i} of the remote call cannot be serialized: {e}") from None
        for k, v in kwargs.items():
            try:
                serialization.serialize(v)
            except TypeError as e:
                raise TypeError(f"Keyword argument {k!r} of the remote call cannot be serialized: {e}") from None

    # -- loop thread from here on ------------------------------------------------------------
    def fail_all(self, payload: list) -> None:
        """Our node is gone: every task we own fails with `payload`."""
        for spec in list(self._specs.values()):
            self._fail(spec, payload)
        for q in self._queues.values():
            q.pending.clear()
            q.requests.clear()
            q.leases.clear()

    def _submit(self, spec: TaskSpec) -> None:
        if self.client.node_dead is not None:
            self._fail(spec, self.client._error_payload(peer_error(self.client.node_address, self.client.node_dead, self.client.node_address)))
            return
        self._specs[spec.task_id] = spec
        deps = spec.dep_refs
        if not deps:
            spec.dep_payloads = []
            self._enqueue(spec)
            return
        spec.dep_payloads = [None] * len(deps)
        spec.waiting = len(deps)

        def make_cb(i: int) -> Callable[[list], None]:
            def cb(payload: list) -> None:
                spec.dep_payloads[i] = payload
                spec.waiting -= 1
                if spec.waiting == 0:
                    self._deps_ready(spec)
            return cb

        for i, ref in enumerate(deps):
            self.client._when_ready(ref, make_cb(i))

    def _deps_ready(self, spec: TaskSpec) -> None:
        if spec.cancelled:
            return
        for payload in spec.dep_payloads:
            if payload[0] == p.ERROR:  # an upstream failure fails this task without running it
                self._fail(spec, payload)
                return
        self._enqueue(spec)

    def _enqueue(self, spec: TaskSpec, front: bool = False) -> None:
        q = self._queues.get(spec.queue_key)
        if q is None:
            q = self._queues[spec.queue_key] = ShapeQueue(spec.queue_key, spec.shape, spec.runtime_env, spec.single,
                                                          spec.strategy)
        if front:
            q.pending.appendleft(spec)
        else:
            q.pending.append(spec)
        self._pump(q)

    def _pump(self, q: ShapeQueue) -> None:
        if self.client._released and not self.client._release_wakeup:
            self.client._process_releases()  # a wake-up lost to a signal inside __del__ must not leak
        cfg = self.config
        now = time.perf_counter()
        for lease in q.leases.values():
            if not q.pending:
                break
            for _ in range(min(q.room(lease, cfg.lease_pipeline_depth, now), len(q.pending))):
                self._push(q, lease, q.pending.popleft())
            if lease.linger is not None and lease.in_flight:
                lease.linger.cancel()
                lease.linger = None
        for _ in range(q.wanted_requests(cfg.lease_pipeline_depth, cfg.max_leases_per_shape)):
            self._request_lease(q, self.client.node_address, q.strategy)
        if not q.pending and q.requests:
            for rid, node in q.requests.items():
                self.client.forget_request(rid)
                self._lease_of_request.pop(rid, None)
                self.endpoint.send(node, p.CancelLeaseRequest(rid))
            q.requests.clear()

    def _request_lease(self, q: ShapeQueue, node: str, strategy: Any) -> None:
        if node in self.client.dead_peers:
            # Sent on (spillback) to a node we have since heard is dead: ask our own again.
            node, strategy = self.client.node_address, q.strategy
        self.client.ensure_registered(node)
        rid = self.client._request(node, lambda rid: p.RequestLease(rid, q.shape, self.client.job_id, q.runtime_env,
                                                                    strategy), self._on_lease_reply)
        q.requests[rid] = node
        self._lease_of_request[rid] = q

    def on_lease_infeasible(self, msg: p.LeaseInfeasible, peer: Peer) -> None:
        """Say once, in the owner's output, which task cannot run anywhere and why."""
        q = self._lease_of_request.get(msg.req_id)
        name = q.pending[0].name if q is not None and q.pending else "a task"
        logger.warning("Task %s cannot run on any node: it needs %s, and no node has that much (node resources: "
                       "%s). It stays pending until a node that fits joins; ray.cancel() ends it.", name,
                       msg.missing, {k: v for k, v in msg.available.items() if k in msg.missing})

    def _on_lease_reply(self, msg: Any) -> None:
        q = self._lease_of_request.pop(msg.req_id, None)
        if q is None:
            return
        node = q.requests.pop(msg.req_id, self.client.node_address)
        if isinstance(msg, p.LeaseSpillback):
            # Another node fits: ask it (with what strategy: see spillback_strategy).
            self.client.node_addresses[msg.node_id] = msg.address
            if q.pending:
                self._request_lease(q, msg.address, spillback_strategy(q.strategy, msg.node_id))
            return
        if isinstance(msg, p.LeaseFailed):
            err = serialization.deserialize_exception(msg.error)
            while q.pending:
                self._fail(q.pending.popleft(), self.client._error_payload(err))
            return
        lease = Lease(msg.lease_id, msg.worker_id, msg.worker_address, msg.gpu_ids, node)
        q.leases[lease.lease_id] = lease
        if not q.pending:
            self._return_lease(q, lease)
            return
        self._pump(q)

    def _push(self, q: ShapeQueue, lease: Lease, spec: TaskSpec) -> None:
        blob = None
        if spec.fn_id not in lease.fns_sent:
            lease.fns_sent.add(spec.fn_id)
            blob = spec.fn_blob
        lease.in_flight[spec.task_id] = spec
        self._task_lease[spec.task_id] = (q, lease)
        spec.pushed_at = time.perf_counter()
        self.endpoint.send(lease.address, p.PushTask(
            spec.task_id, spec.name, spec.fn_id, blob, spec.args_blob, spec.dep_payloads, spec.num_returns,
            self.client.job_id, self.client.address, self.client.driver_address, spec.cpus, spec.max_calls,
            lease.gpu_ids, spec.placement_group))

    def on_task_reply(self, msg: p.TaskReply, peer: Peer) -> None:
        found = self._task_lease.pop(msg.task_id, None)
        if found is None:
            self.client.actor_submitter.on_task_reply(msg)
            return
        q, lease = found
        spec = lease.in_flight.pop(msg.task_id)
        lease.blocked = False
        q.record_duration(time.perf_counter() - spec.pushed_at)
        if spec.cancelled:  # its refs already raise TaskCancelledError
            self._free_payloads(msg.returns)
        elif msg.app_error and spec.retries_left > 0 and retryable(spec.retry_exceptions, msg):
            spec.retries_left -= 1
            self._enqueue(spec, front=True)
        elif spec.num_returns == p.STREAMING:
            self._specs.pop(spec.task_id, None)
            self._end_stream(spec.task_id, msg.returns[0][1])
        else:
            self._specs.pop(spec.task_id, None)
            for i, (rid, payload) in enumerate(zip(spec.return_ids, msg.returns)):
                if msg.nested and msg.nested[i]:
                    self.client._record_contained(rid, msg.nested[i])
                self.client._set_payload(rid, payload)
        if msg.worker_exiting:  # max_calls reached: the node ends the worker for us
            lease.dead = True
            q.leases.pop(lease.lease_id, None)
            self.endpoint.send(lease.node, p.ReturnLease(lease.lease_id, True))
            for t in list(lease.in_flight):  # never started there: run them elsewhere
                self._task_lease.pop(t, None)
                self._enqueue(lease.in_flight.pop(t), front=True)
        self._pump(q)
        if not lease.in_flight and not q.pending and not lease.dead and lease.linger is None:
            lease.linger = self.client.loop.call_later(self.config.lease_linger_s, self._linger_over, q, lease)

    def on_task_not_run(self, msg: p.TaskNotRun, peer: Peer) -> None:
        """A worker gave back a task it never started: queue it again, no retry counted."""
        found = self._task_lease.pop(msg.task_id, None)
        if found is None:
            return
        q, lease = found
        spec = lease.in_flight.pop(msg.task_id)
        lease.blocked = True
        if not spec.cancelled:
            self._enqueue(spec, front=True)

    def _fail(self, spec: TaskSpec, payload: list) -> None:
        """Every result of `spec` becomes `payload` (an error); a stream gets it as its next item."""
        self._specs.pop(spec.task_id, None)
        if spec.num_returns == p.STREAMING:
            n = self._stream_seen.get(spec.task_id, 0) + 1  # after the last item delivered
            self._stream_item(spec.task_id, n, payload)
            self._end_stream(spec.task_id, n)
        else:
            for rid in spec.return_ids:
                self.client._set_payload(rid, payload)

    # -- streaming generators ------------------------------------------------------------------
    def on_generator_item(self, msg: p.GeneratorItem, peer: Peer) -> None:
        if msg.nested:
            self.client._record_contained(ids.object_id(msg.task_id, msg.index), msg.nested)
        self._stream_item(msg.task_id, msg.index, msg.payload)

    def _stream_item(self, task_id: bytes, index: int, payload: list) -> None:
        held = self._streams.get(task_id)
        oid = ids.object_id(task_id, index)
        if held is None or index <= self._stream_seen.get(task_id, 0):
            # The consumer is gone, or a retried task yields again what we already delivered.
            if payload[0] == p.SHM:
                self.client.free_stored([payload])
            return
        self._stream_seen[task_id] = index
        with self.lock:
            entry = self.objects.get(oid)
            if oid not in held:
                held.add(oid)
                self.client.refs.add_local(oid)
            if entry is None:
                self.objects[oid] = Entry(owned=True)
        self.client._set_payload(oid, payload)

    def _end_stream(self, task_id: bytes, count: int) -> None:
        self._stream_item(task_id, count + 1, [p.END, count])

    def _expect_item(self, task_id: bytes, index: int) -> IdRef:
        """The item's id, with a pending entry to wait on if it has not arrived yet."""
        oid = ids.object_id(task_id, index)
        with self.lock:
            if oid not in self.objects:
                self.objects[oid] = Entry(owned=True)
        return IdRef(oid, self.client.address)

    def stream_next(self, task_id: bytes, index: int, timeout: float | None) -> list:
        """Caller's thread: the payload of item `index` (END when the stream is over)."""
        return self.client.payloads([self._expect_item(task_id, index)], timeout)[0]

    async def stream_next_async(self, task_id: bytes, index: int) -> list:
        item = self._expect_item(task_id, index)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def cb(payload: list) -> None:
            call_in(loop, lambda: fut.done() or fut.set_result(payload))

        self.client._when_ready(item, cb)
        return await fut

    def stream_release(self, task_id: bytes, oid: bytes | None) -> None:
        """Any thread: the consumer took item `oid` (or, with None, dropped the whole stream)."""
        self.endpoint.call_threadsafe(self._stream_release, task_id, oid)

    def _stream_release(self, task_id: bytes, oid: bytes | None) -> None:
        held = self._streams.get(task_id)
        if held is None:
            return
        if oid is None:
            del self._streams[task_id]
            self._stream_seen.pop(task_id, None)
            drop = list(held)
        elif oid in held:
            held.discard(oid)
            drop = [oid]
        else:
            drop = []
        if drop:
            self.client.drop_refs(drop)

    def _free_payloads(self, payloads: list) -> None:
        self.client.free_stored([pl for pl in payloads if pl[0] == p.SHM])

    # -- cancel --------------------------------------------------------------------------------
    def cancel(self, ref: Any, force: bool, recursive: bool) -> None:
        """Any thread: cancel the task that produces `ref` (a no-op once it has finished)."""
        self.endpoint.call_threadsafe(self.cancel_task, ref._id[: ids.TASK_ID_LEN], force, recursive)

    def cancel_generator(self, task_id: bytes, force: bool, recursive: bool) -> None:
        """Any thread: cancel a streaming generator task."""
        self.endpoint.call_threadsafe(self.cancel_task, task_id, force, recursive)

    def cancel_task(self, task_id: bytes, force: bool, recursive: bool) -> None:
        spec = self._specs.get(task_id)
        if spec is None:
            self.client.actor_submitter.cancel(task_id, force, recursive)
            return
        if spec.cancelled:
            return
        from asyncray.exceptions import TaskCancelledError

        spec.cancelled = True
        found = self._task_lease.get(task_id)
        if found is not None:
            q, lease = found
            self.endpoint.send(lease.address, p.CancelTask(task_id, force, recursive))
        else:
            q = self._queues.get(spec.queue_key)
            if q is not None:
                try:
                    q.pending.remove(spec)
                except ValueError:
                    pass
                self._pump(q)
        self._fail(spec, self.client._error_payload(TaskCancelledError(task_id.hex())))

    def _linger_over(self, q: ShapeQueue, lease: Lease) -> None:
        lease.linger = None
        if not lease.in_flight and not lease.dead and lease.lease_id in q.leases:
            self._return_lease(q, lease)

    def _return_lease(self, q: ShapeQueue, lease: Lease) -> None:
        q.leases.pop(lease.lease_id, None)
        self.endpoint.send(lease.node, p.ReturnLease(lease.lease_id, False))

    def on_node_died(self, address: str, reason: str) -> None:
        """Loop thread: a node we leased from is gone; its leases died with their workers and
        our requests there will not be answered."""
        for q in list(self._queues.values()):
            for lease in [ls for ls in q.leases.values() if ls.node == address]:
                self.on_lease_worker_died(p.LeaseWorkerDied(lease.lease_id, reason), None)  # type: ignore[arg-type]
            lost = [rid for rid, node in q.requests.items() if node == address]
            for rid in lost:
                del q.requests[rid]
                self._lease_of_request.pop(rid, None)
                self.client.forget_request(rid)
            if lost:
                self._pump(q)

    def on_lease_worker_died(self, msg: p.LeaseWorkerDied, peer: Peer) -> None:
        from asyncray.exceptions import WorkerCrashedError

        for q in self._queues.values():
            lease = q.leases.pop(msg.lease_id, None)
            if lease is None:
                continue
            lease.dead = True
            if lease.linger is not None:
                lease.linger.cancel()
            for task_id, spec in list(lease.in_flight.items()):
                self._task_lease.pop(task_id, None)
                if spec.cancelled:
                    continue
                if spec.retries_left != 0:
                    spec.retries_left -= 1
                    self._enqueue(spec, front=True)
                else:
                    err = WorkerCrashedError(
                        f"The worker running task {spec.name} ({task_id.hex()}) died unexpectedly: {msg.reason}. "
                        "It was retried as many times as max_retries allows.")
                    self._fail(spec, self.client._error_payload(err))
            lease.in_flight.clear()
            self._pump(q)
            return
