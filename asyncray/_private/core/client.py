"""CoreClient: what every driver and worker process runs to own objects and submit tasks.

Threads: public calls (`submit_task`, `get`, `put`, ...) run in the caller's thread; sockets
and all scheduling state belong to the runtime's loop thread, reached through
`endpoint.call_threadsafe` (one wake-up per burst). The object table (`objects`) is shared and
guarded by `lock`, so a `get` of a value that is already here, and a small `put`, never leave
the caller's thread.

Ownership: the process that submits a task or calls `put` owns the result. It keeps small
values in `objects`; large ones live in the node's store and `objects` records where. Counting
follows Ray's protocol (see references.py): local ObjectRef instances, task specs in flight
(they hold their argument refs), borrowers, and objects that contain the ref. An owned object
that none of these holds leaves the table and, if stored, the store.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from asyncray._private import ids, protocol as p, serialization
from asyncray._private.config import Config
from asyncray._private.core.leases import Lease, ShapeQueue
from asyncray._private.core.references import References, container_key
from asyncray._private.object_store import segments
from asyncray._private.transport.sockets import Endpoint, Peer

logger = logging.getLogger(__name__)

PENDING = None


class _Dep:
    """Placeholder for a top-level ObjectRef argument, replaced by its value in the worker."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return _Dep, (self.index,)


def _peer_error(address: str, reason: str, node_address: str) -> BaseException:
    from asyncray.exceptions import LocalRayletDiedError, RaySystemError

    if address == node_address:
        return LocalRayletDiedError(f"the node manager at {address} died: {reason}")
    return RaySystemError(f"the process at {address} died: {reason}")


def _call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Schedule fn in a waiter's loop; a loop that closed meanwhile no longer wants it."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


class _IdRef:
    """The two attributes of an ObjectRef that waiting needs, without counting a reference."""

    __slots__ = ("_id", "_owner")

    def __init__(self, oid: bytes, owner: str) -> None:
        self._id = oid
        self._owner = owner

    def hex(self) -> str:
        return self._id.hex()


class Entry:
    __slots__ = ("payload", "callbacks", "owned")

    def __init__(self, owned: bool) -> None:
        self.payload: list | None = PENDING
        self.callbacks: list[Callable[[list], None]] | None = None
        self.owned = owned


class TaskSpec:
    __slots__ = ("task_id", "name", "fn_id", "fn_blob", "args_blob", "dep_refs", "dep_payloads", "num_returns",
                 "return_ids", "queue_key", "shape", "runtime_env", "retries_left", "retry_exceptions",
                 "single", "waiting", "pushed_at", "cpus", "max_calls", "cancelled", "nested_refs")


class FunctionDescriptor:
    """A remote function as the client sees it: pickled once per process, sent once per worker."""

    __slots__ = ("fn_id", "blob", "name")

    def __init__(self, fn: Callable) -> None:
        self.blob = serialization.dumps_function(fn)
        self.fn_id = ids.random_id(16)
        self.name = getattr(fn, "__qualname__", getattr(fn, "__name__", "task"))


class CoreClient:
    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint: Endpoint, *, config: Config, session: str,
                 node_address: str, job_id: int, address: str, driver_address: str,
                 worker_id: bytes | None = None) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self.config = config
        self.session = session
        self.node_address = node_address
        self.job_id = job_id
        self.address = address
        self.driver_address = driver_address
        self.worker_id = worker_id
        self.task_ids = ids.TaskIdGenerator(ids.job_id_from_int(job_id))
        self.lock = threading.Lock()
        self.objects: dict[bytes, Entry] = {}
        self.refs = References()
        self.refcounts = self.refs.local  # read by tests and by the release fast path
        self._released: deque[bytes] = deque()
        self._release_wakeup = False
        self._to_free: list[bytes] = []
        self._outbox: list[tuple[str, Any]] = []  # messages decided under the lock, sent after it
        self._borrow_state = threading.local()
        self.mappings = segments.MappingCache(on_keep=self._arm_mapping_sweep)
        self._sweep_armed = False
        self._req_ids = itertools.count(1)
        self._requests: dict[int, Callable[[Any], None]] = {}
        self._request_failed: dict[int, Callable[[str, str], None]] = {}
        self._requests_to: dict[str, set[int]] = {}
        self._request_address: dict[int, str] = {}
        self._dead_peers: dict[str, str] = {}  # address -> why (from PeerDied)
        self._queues: dict[tuple, ShapeQueue] = {}
        self._lease_of_request: dict[int, ShapeQueue] = {}
        self._task_lease: dict[bytes, tuple[ShapeQueue, Lease]] = {}
        self._fetching: set[bytes] = set()
        self._borrower_waits: dict[bytes, list[tuple[Peer, int]]] = {}
        # Every task we own that has not finished, for cancel(); and the tasks submitted by the
        # task this worker is running (for recursive cancel).
        self._specs: dict[bytes, TaskSpec] = {}
        self.children: list[bytes] | None = None
        # Streaming generator tasks we own: task id -> ids of items we hold a ref on for the consumer.
        self._streams: dict[bytes, set[bytes]] = {}
        self.closed = False
        self.node_dead: str | None = None  # why our node manager is gone, once it is
        # Hooks a worker sets so the node can lend its CPU while it blocks in get.
        self.on_block: Callable[[], None] | None = None
        self.on_unblock: Callable[[], None] | None = None

    def _arm_mapping_sweep(self) -> None:
        """Any thread: while the mapping cache keeps something, sweep it every second."""
        if not self._sweep_armed and not self.closed:
            self._sweep_armed = True
            self.endpoint.call_threadsafe(self.loop.call_later, 1.0, self._sweep_mappings)

    def _sweep_mappings(self) -> None:
        if self.closed:
            return
        if self.mappings.sweep():
            self.loop.call_later(1.0, self._sweep_mappings)
        else:
            self._sweep_armed = False

    # ====================================================================== references
    def add_ref(self, oid: bytes) -> None:
        with self.lock:
            self.refs.add_local(oid)

    def release_ref(self, oid: bytes) -> None:
        # May run in any thread, inside the GC: no locks, just a queue and one wake-up.
        self._released.append(oid)
        if not self._release_wakeup and not self.closed:
            self._release_wakeup = True
            self.endpoint.call_threadsafe(self._process_releases)

    def _process_releases(self) -> None:
        self._release_wakeup = False
        released = self._released
        refs = self.refs
        with self.lock:
            while released:
                oid = released.popleft()
                if refs.release_local(oid):
                    self._maybe_free(oid)
        self._flush_frees()

    def _maybe_free(self, oid: bytes) -> None:
        """Under the lock: drop `oid` if nothing holds it any more (and what it contains)."""
        refs = self.refs
        if refs.in_use(oid):
            return
        entry = self.objects.get(oid)
        if entry is None:
            owner = refs.pop_borrowed(oid)
            if owner is not None:
                self._outbox.append((owner, p.RemoveBorrower([oid], self.address)))
            return
        if entry.owned:
            if entry.payload is PENDING:
                return  # dropped when the result arrives (_set_payload)
            del self.objects[oid]
            if entry.payload[0] == p.SHM:
                self._to_free.append(oid)
            key = container_key(oid)
            for inner, owner in refs.pop_contained(oid):
                if owner == self.address:
                    refs.remove_borrower(inner, key)
                    self._maybe_free(inner)
                else:
                    self._outbox.append((owner, p.RemoveBorrower([inner], key)))
        else:
            if entry.payload is not PENDING or not entry.callbacks:
                del self.objects[oid]
            owner = refs.pop_borrowed(oid)
            if owner is not None:
                self._outbox.append((owner, p.RemoveBorrower([oid], self.address)))

    def _flush_frees(self) -> None:
        """Loop thread, after the lock: send what _maybe_free decided."""
        if self._to_free:
            to_free, self._to_free = self._to_free, []
            self.endpoint.send(self.node_address, p.FreeObjects(to_free))
        if self._outbox:
            out, self._outbox = self._outbox, []
            for address, msg in out:
                self.endpoint.send(address, msg)

    # -- borrowing ------------------------------------------------------------------------------
    def deserialized_ref(self, oid: bytes, owner: str) -> Any:
        """An ObjectRef unpickled in this process; a foreign one makes us a borrower."""
        from asyncray.object_ref import ObjectRef

        ref = ObjectRef(oid, owner, self)
        if owner != self.address:
            with self.lock:
                first = self.refs.note_borrowed(oid, owner)
            if first:
                pending = getattr(self._borrow_state, "new", None)
                if pending is not None:
                    pending.append((oid, owner))
                else:  # unpickled outside value(): register without waiting
                    self.endpoint.call_threadsafe(self._send_borrows, [(oid, owner)], None, None)
        return ref

    def _send_borrows(self, borrows: list[tuple[bytes, str]], hold: Any, done: Any) -> None:
        """Loop thread: register as borrower with each owner; `hold` (the container's refs)
        stays alive, and `done` unset, until every owner has acknowledged."""
        by_owner: dict[str, list[bytes]] = {}
        for oid, owner in borrows:
            by_owner.setdefault(owner, []).append(oid)
        left = [len(by_owner)]

        def acked(_msg: Any) -> None:
            left[0] -= 1
            if left[0] == 0 and done is not None:
                done.set()

        for owner, oids in by_owner.items():
            self._request(owner, lambda rid, oids=oids: p.AddBorrower(rid, oids, self.address),
                          lambda msg, h=hold: acked(msg), owner_failed=lambda address, why: acked(None))

    def on_add_borrower(self, msg: p.AddBorrower, peer: Peer) -> None:
        with self.lock:
            for oid in msg.object_ids:
                self.refs.add_borrower(oid, msg.key)
        if msg.req_id:
            peer.answer(p.AddBorrowerReply(msg.req_id))

    def on_remove_borrower(self, msg: p.RemoveBorrower, peer: Peer) -> None:
        with self.lock:
            for oid in msg.object_ids:
                self.refs.remove_borrower(oid, msg.key)
                self._maybe_free(oid)
        self._flush_frees()

    def hold_contained(self, container: bytes, inner_refs: list, owner_of_container: str | None = None) -> list:
        """`container` (owned by us, or by the caller of the task we run) holds `inner_refs`:
        register that hold with each inner ref's owner. Returns [[id, owner], ...]."""
        if not inner_refs:
            return []
        key = container_key(container)
        nested, remote = [], []
        with self.lock:
            for r in inner_refs:
                nested.append([r._id, r._owner])
                if r._owner == self.address:
                    self.refs.add_borrower(r._id, key)
                else:
                    remote.append(r)
        for r in remote:
            # Same connection as our own later release of r: the owner sees the hold first.
            self.endpoint.call_threadsafe(self.endpoint.send, r._owner, p.AddBorrower(0, [r._id], key))
        return nested

    def _record_contained(self, container: bytes, nested: list) -> None:
        if nested:
            with self.lock:
                self.refs.set_contained(container, [(oid, owner) for oid, owner in nested])

    def node_died(self, reason: str) -> None:
        """Loop thread: our node manager is gone. Everything that needs it fails now, with
        LocalRayletDiedError, instead of waiting forever."""
        self.node_dead = reason
        err = self._error_payload(_peer_error(self.node_address, reason, self.node_address))
        for spec in list(self._specs.values()):
            self._fail(spec, err)
        for q in self._queues.values():
            q.pending.clear()
            q.requests.clear()
            q.leases.clear()
        self.on_peer_died(p.PeerDied(self.node_address, reason), None)  # type: ignore[arg-type]

    def on_peer_died(self, msg: p.PeerDied, peer: Peer) -> None:
        """A process on our node died: what we wait for from it fails; its borrows go."""
        self._dead_peers[msg.address] = msg.reason
        self.endpoint.disconnect(msg.address)
        for rid in list(self._requests_to.pop(msg.address, ())):
            cb = self._requests.pop(rid, None)
            failed = self._request_failed.pop(rid, None)
            self._request_address.pop(rid, None)
            if cb is not None and failed is not None:
                failed(msg.address, msg.reason)
        with self.lock:
            for oid in self.refs.remove_borrower_everywhere(msg.address):
                self._maybe_free(oid)
        self._flush_frees()

    def object_count(self) -> int:
        with self.lock:
            return len(self.objects)

    # ====================================================================== results
    def _set_payload(self, oid: bytes, payload: list) -> None:
        """Loop thread: an object became available; wake whoever waits for it."""
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None:
                if not self.refs.in_use(oid):
                    # Nobody holds a ref any more: free the stored copy straight away.
                    if payload[0] == p.SHM:
                        self.endpoint.send(self.node_address, p.FreeObjects([oid]))
                    return
                entry = self.objects[oid] = Entry(owned=True)
            entry.payload = payload
            callbacks, entry.callbacks = entry.callbacks, None
            if entry.owned:
                self._maybe_free(oid)
        self._flush_frees()
        if callbacks:
            for cb in callbacks:
                try:
                    cb(payload)
                except Exception:  # one broken waiter must not starve the others
                    logger.exception("object callback failed")
        waits = self._borrower_waits.pop(oid, None)
        if waits:
            for peer, req_id in waits:
                peer.answer(p.ObjectReply(req_id, payload))

    def _when_ready(self, ref: Any, cb: Callable[[list], None]) -> None:
        """Call cb(payload) once the object is available (maybe now, in this thread)."""
        oid = ref._id
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None:
                entry = self.objects[oid] = Entry(owned=False)
            payload = entry.payload
            if payload is PENDING:
                if entry.callbacks is None:
                    entry.callbacks = [cb]
                else:
                    entry.callbacks.append(cb)
                fetch = not entry.owned and oid not in self._fetching
            else:
                fetch = False
        if payload is not PENDING:
            cb(payload)
        elif fetch:
            self.endpoint.call_threadsafe(self._fetch, oid, ref._owner)

    def _fetch(self, oid: bytes, owner: str) -> None:
        """Loop thread: ask a ref's owner for the value (we are a borrower)."""
        if oid in self._fetching:
            return
        self._fetching.add(oid)

        def done(msg: p.ObjectReply) -> None:
            self._fetching.discard(oid)
            self._set_payload(oid, msg.payload)

        def owner_died(address: str, reason: str) -> None:
            from asyncray.exceptions import OwnerDiedError

            done(p.ObjectReply(0, self._error_payload(OwnerDiedError(oid.hex(), f"{address} ({reason})"))))

        self._request(owner, lambda rid: p.GetObject(rid, oid), done, owner_failed=owner_died)

    def on_get_object(self, msg: p.GetObject, peer: Peer) -> None:
        """A borrower asks for one of our objects."""
        with self.lock:
            entry = self.objects.get(msg.object_id)
            payload = entry.payload if entry is not None else None
        if payload is not None:
            peer.answer(p.ObjectReply(msg.req_id, payload))
        elif entry is not None:
            self._borrower_waits.setdefault(msg.object_id, []).append((peer, msg.req_id))
        else:
            from asyncray.exceptions import ObjectFreedError

            err = ObjectFreedError(msg.object_id.hex())
            peer.answer(p.ObjectReply(msg.req_id, self._error_payload(err)))

    @staticmethod
    def _error_payload(exc: BaseException) -> list:
        return [p.ERROR, serialization.dumps_exception(exc)]

    # ====================================================================== requests
    def _request(self, address: str, make: Callable[[int], Any], on_reply: Callable[[Any], None],
                 owner_failed: Callable[[str, str], None] | None = None) -> None:
        """Send a request; on_reply gets the answer, or owner_failed an error if the peer dies."""
        if address in self._dead_peers and owner_failed is not None:
            owner_failed(address, self._dead_peers[address])
            return
        rid = next(self._req_ids)
        self._requests[rid] = on_reply
        if owner_failed is not None:
            self._request_failed[rid] = owner_failed
            self._requests_to.setdefault(address, set()).add(rid)
            self._request_address[rid] = address
        self.endpoint.send(address, make(rid))

    def on_reply(self, msg: Any, peer: Peer) -> None:
        rid = msg.req_id
        cb = self._requests.pop(rid, None)
        if self._request_failed.pop(rid, None) is not None:
            address = self._request_address.pop(rid)
            waiting = self._requests_to.get(address)
            if waiting is not None:
                waiting.discard(rid)
                if not waiting:
                    del self._requests_to[address]
        if cb is not None:
            cb(msg)
        elif type(msg) is p.LeaseGranted:  # granted after we cancelled the request: give it back
            self.endpoint.send(self.node_address, p.ReturnLease(msg.lease_id, False))

    def call(self, address: str, make: Callable[[int], Any], timeout: float | None = None) -> Any:
        """Any thread but the loop's: send a request and wait for its reply."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def peer_died(addr: str, reason: str) -> None:
            if not fut.done():
                fut.set_exception(_peer_error(addr, reason, self.node_address))

        self.endpoint.call_threadsafe(self._request, address, make, fut.set_result, peer_died)
        return fut.result(timeout)

    # ====================================================================== get
    def payloads(self, refs: list, timeout: float | None) -> list[list]:
        """Caller's thread: the payloads of `refs`, waiting up to `timeout` seconds."""
        out: list[list | None] = [None] * len(refs)
        missing = []
        objects = self.objects
        for i, ref in enumerate(refs):
            entry = objects.get(ref._id)
            if entry is not None and entry.payload is not PENDING:
                out[i] = entry.payload
            else:
                missing.append(i)
        if not missing:
            return out  # type: ignore[return-value]
        done = threading.Event()
        left = [len(missing)]
        lock = threading.Lock()

        def make_cb(i: int) -> Callable[[list], None]:
            def cb(payload: list) -> None:
                out[i] = payload
                with lock:
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
            return cb

        for i in missing:
            self._when_ready(refs[i], make_cb(i))
        if not done.is_set():
            blocked = self.on_block is not None
            if blocked:
                self.on_block()
            try:
                if not done.wait(timeout):
                    from asyncray.exceptions import GetTimeoutError

                    raise GetTimeoutError(
                        f"Get timed out: {left[0]} of {len(refs)} object(s) not ready after {timeout} s "
                        f"(first: {refs[missing[0]].hex()}).")
            finally:
                if blocked:
                    self.on_unblock()
        return out  # type: ignore[return-value]

    def value(self, payload: list, hold: Any = None, borrows_done: list | None = None) -> Any:
        """Rebuild a value. Refs inside it that we did not have make us a borrower: the
        registration goes out now, with `hold` (the container's refs) kept alive until the
        owners acknowledge it; a threading.Event per registration is appended to `borrows_done`."""
        kind = payload[0]
        if kind == p.ERROR:
            raise serialization.deserialize_exception(payload[1])
        state = self._borrow_state
        outer = getattr(state, "new", None)
        state.new = new = []
        try:
            if kind == p.INLINE:
                value = serialization.deserialize(payload[1])
            else:
                value = serialization.deserialize(memoryview(self._map(payload)))
        finally:
            state.new = outer
        if new:
            done = threading.Event()
            if borrows_done is not None:
                borrows_done.append(done)
            self.endpoint.call_threadsafe(self._send_borrows, new, hold, done)
        return value

    def _map(self, payload: list) -> Any:
        """The segment of a stored value, restored from disk first if the store spilled it."""
        try:
            return self.mappings.base(payload[1])
        except FileNotFoundError:
            pass
        oid = CoreClient._oid_of_segment(payload[1])
        reply = self.call(self.node_address, lambda rid: p.RestoreObject(rid, oid), timeout=300)
        if reply.error is not None:
            raise serialization.deserialize_exception(reply.error)
        return self.mappings.base(payload[1])

    def get(self, refs: list, timeout: float | None) -> list:
        return [self.value(pl, hold=refs) for pl in self.payloads(refs, timeout)]

    async def get_async(self, refs: list, timeout: float | None, single: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        out: list[Any] = [None] * len(refs)
        left = [len(refs)]

        def on_payload(i: int, payload: list) -> None:
            out[i] = payload
            left[0] -= 1
            if left[0] == 0 and not fut.done():
                fut.set_result(None)

        for i, ref in enumerate(refs):
            entry = self.objects.get(ref._id)
            if entry is not None and entry.payload is not PENDING:
                on_payload(i, entry.payload)
            else:
                self._when_ready(ref, lambda pl, i=i: _call_in(loop, on_payload, i, pl))
        if not refs:
            fut.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            from asyncray.exceptions import GetTimeoutError

            raise GetTimeoutError(f"Get timed out: {left[0]} of {len(refs)} object(s) not ready after {timeout} s.")
        values = [self.value(pl, hold=refs) for pl in out]
        return values[0] if single else values

    def future(self, ref: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def resolve(payload: list) -> None:
            try:
                fut.set_result(self.value(payload, hold=ref))
            except BaseException as e:  # the task's error
                fut.set_exception(e)

        def cb(payload: list) -> None:
            if payload[0] == p.SHM and threading.current_thread() is self._loop_thread():
                # Mapping may need a round trip (a spilled object): never block the loop on it.
                threading.Thread(target=resolve, args=(payload,), daemon=True).start()
            else:
                resolve(payload)

        self._when_ready(ref, cb)
        return fut

    def _loop_thread(self) -> Any:
        return getattr(self.loop, "_asyncray_thread", None)

    def when_ready(self, ref: Any, cb: Callable[[list], None]) -> None:
        """Public form of _when_ready for ObjectRef's future protocol."""
        self._when_ready(ref, cb)

    def ready_payload(self, ref: Any) -> list | None:
        entry = self.objects.get(ref._id)
        return entry.payload if entry is not None else None

    def ready_now(self, ref: Any) -> bool:
        entry = self.objects.get(ref._id)
        return entry is not None and entry.payload is not PENDING

    # ====================================================================== put
    def put(self, value: Any) -> Any:
        from asyncray.object_ref import ObjectRef

        oid = ids.object_id(self.task_ids.next_task_id(), 0)
        ser = serialization.serialize(value)
        self._record_contained(oid, self.hold_contained(oid, ser.refs))
        payload = self._store_serialized(oid, ser)
        entry = Entry(owned=True)
        entry.payload = payload
        with self.lock:
            self.objects[oid] = entry
        return ObjectRef(oid, self.address, self)

    def _store_serialized(self, oid: bytes, ser: serialization.Serialized, owner: str | None = None) -> list:
        """Small values travel inline; large ones go to the node's store (any thread but the loop's)."""
        if ser.size <= self.config.inline_limit:
            return [p.INLINE, ser.to_bytes()]
        owner = owner or self.address
        reply = self.call(self.node_address, lambda rid: p.CreateObject(rid, oid, ser.size, owner))
        if reply.error is not None:
            raise serialization.deserialize_exception(reply.error)
        segments.write(reply.segment, ser.chunks(), ser.size)
        self.endpoint.call_threadsafe(self.endpoint.send, self.node_address, p.SealObject(oid))
        return [p.SHM, reply.segment, ser.size, b""]

    # ====================================================================== submit
    def submit_task(self, fn: FunctionDescriptor, args: tuple, kwargs: dict, *, num_returns: int,
                    shape: dict[str, float], runtime_env: Any, max_retries: int, retry_exceptions: Any,
                    max_calls: int, name: str | None = None) -> list:
        from asyncray.object_ref import ObjectRef

        spec = TaskSpec()
        spec.task_id = task_id = self.task_ids.next_task_id()
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
        spec.queue_key = (fn.fn_id, tuple(sorted(shape.items())), repr(runtime_env), max_calls > 0)
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
        refs = [ObjectRef(rid, self.address, self) for rid in spec.return_ids]
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
                    deps.append(self.put(a))
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
    def _submit(self, spec: TaskSpec) -> None:
        if self.node_dead is not None:
            self._fail(spec, self._error_payload(_peer_error(self.node_address, self.node_dead, self.node_address)))
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
            self._when_ready(ref, make_cb(i))

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
            q = self._queues[spec.queue_key] = ShapeQueue(spec.queue_key, spec.shape, spec.runtime_env, spec.single)
        if front:
            q.pending.appendleft(spec)
        else:
            q.pending.append(spec)
        self._pump(q)

    def _pump(self, q: ShapeQueue) -> None:
        if self._released and not self._release_wakeup:
            self._process_releases()  # a wake-up lost to a signal inside __del__ must not leak
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
            rid = next(self._req_ids)
            q.requests.add(rid)
            self._lease_of_request[rid] = q
            self._requests[rid] = self._on_lease_reply
            self.endpoint.send(self.node_address, p.RequestLease(rid, q.shape, self.job_id, q.runtime_env))
        if not q.pending and q.requests:
            for rid in q.requests:
                self._requests.pop(rid, None)
                self._lease_of_request.pop(rid, None)
                self.endpoint.send(self.node_address, p.CancelLeaseRequest(rid))
            q.requests.clear()

    def _on_lease_reply(self, msg: Any) -> None:
        q = self._lease_of_request.pop(msg.req_id, None)
        if q is None:
            return
        q.requests.discard(msg.req_id)
        if isinstance(msg, p.LeaseFailed):
            err = serialization.deserialize_exception(msg.error)
            while q.pending:
                self._fail(q.pending.popleft(), self._error_payload(err))
            return
        lease = Lease(msg.lease_id, msg.worker_id, msg.worker_address)
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
            self.job_id, self.address, self.driver_address, spec.cpus, spec.max_calls))

    def on_task_reply(self, msg: p.TaskReply, peer: Peer) -> None:
        found = self._task_lease.pop(msg.task_id, None)
        if found is None:
            return
        q, lease = found
        spec = lease.in_flight.pop(msg.task_id)
        q.record_duration(time.perf_counter() - spec.pushed_at)
        if spec.cancelled:  # its refs already raise TaskCancelledError
            self._free_payloads(msg.returns)
        elif msg.app_error and spec.retries_left > 0 and self._retryable(spec, msg):
            spec.retries_left -= 1
            self._enqueue(spec, front=True)
        elif spec.num_returns == p.STREAMING:
            self._specs.pop(spec.task_id, None)
            self._end_stream(spec.task_id, msg.returns[0][1])
        else:
            self._specs.pop(spec.task_id, None)
            for i, (rid, payload) in enumerate(zip(spec.return_ids, msg.returns)):
                if msg.nested and msg.nested[i]:
                    self._record_contained(rid, msg.nested[i])
                self._set_payload(rid, payload)
        if msg.worker_exiting:
            lease.dead = True
            q.leases.pop(lease.lease_id, None)
            for t in list(lease.in_flight):  # never started there: run them elsewhere
                self._task_lease.pop(t, None)
                self._enqueue(lease.in_flight.pop(t), front=True)
        self._pump(q)
        if not lease.in_flight and not q.pending and not lease.dead and lease.linger is None:
            lease.linger = self.loop.call_later(self.config.lease_linger_s, self._linger_over, q, lease)

    def _fail(self, spec: TaskSpec, payload: list) -> None:
        """Every result of `spec` becomes `payload` (an error); a stream gets it as its next item."""
        self._specs.pop(spec.task_id, None)
        if spec.num_returns == p.STREAMING:
            held = self._streams.get(spec.task_id)
            n = 1 + max((int.from_bytes(o[-4:], "big") for o in held), default=0) if held is not None else 1
            self._stream_item(spec.task_id, n, payload)
            self._end_stream(spec.task_id, n)
        else:
            for rid in spec.return_ids:
                self._set_payload(rid, payload)

    # -- streaming generators ------------------------------------------------------------------
    def on_generator_item(self, msg: p.GeneratorItem, peer: Peer) -> None:
        if msg.nested:
            self._record_contained(ids.object_id(msg.task_id, msg.index), msg.nested)
        self._stream_item(msg.task_id, msg.index, msg.payload)

    def _stream_item(self, task_id: bytes, index: int, payload: list) -> None:
        held = self._streams.get(task_id)
        oid = ids.object_id(task_id, index)
        if held is None:  # the consumer is gone
            if payload[0] == p.SHM:
                self.endpoint.send(self.node_address, p.FreeObjects([oid]))
            return
        with self.lock:
            entry = self.objects.get(oid)
            if entry is not None and entry.payload is not PENDING:
                return  # a retried task yields again what we already have
            if oid not in held:
                held.add(oid)
                self.refcounts[oid] = self.refcounts.get(oid, 0) + 1
            if entry is None:
                self.objects[oid] = Entry(owned=True)
        self._set_payload(oid, payload)

    def _end_stream(self, task_id: bytes, count: int) -> None:
        self._stream_item(task_id, count + 1, [p.END, count])

    def stream_next(self, task_id: bytes, index: int, timeout: float | None) -> list:
        """Caller's thread: the payload of item `index` (END when the stream is over)."""
        oid = ids.object_id(task_id, index)
        with self.lock:
            if oid not in self.objects:
                self.objects[oid] = Entry(owned=True)
        return self.payloads([_IdRef(oid, self.address)], timeout)[0]

    async def stream_next_async(self, task_id: bytes, index: int) -> list:
        oid = ids.object_id(task_id, index)
        with self.lock:
            if oid not in self.objects:
                self.objects[oid] = Entry(owned=True)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def cb(payload: list) -> None:
            _call_in(loop, lambda: fut.done() or fut.set_result(payload))

        self._when_ready(_IdRef(oid, self.address), cb)
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
            drop = list(held)
        elif oid in held:
            held.discard(oid)
            drop = [oid]
        else:
            drop = []
        for o in drop:
            self._released.append(o)
        if drop:
            self._process_releases()

    def _free_payloads(self, payloads: list) -> None:
        stored = [pl for pl in payloads if pl[0] == p.SHM]
        if stored:
            self.endpoint.send(self.node_address, p.FreeObjects([self._oid_of_segment(pl[1]) for pl in stored]))

    @staticmethod
    def _oid_of_segment(segment: str) -> bytes:
        return bytes.fromhex(segment.rsplit("-", 1)[1])

    # -- cancel --------------------------------------------------------------------------------
    def cancel(self, ref: Any, force: bool, recursive: bool) -> None:
        """Any thread: cancel the task that produces `ref` (a no-op once it has finished)."""
        self.endpoint.call_threadsafe(self.cancel_task, ref._id[: ids.TASK_ID_LEN], force, recursive)

    def cancel_task(self, task_id: bytes, force: bool, recursive: bool) -> None:
        spec = self._specs.get(task_id)
        if spec is None or spec.cancelled:
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
        self._fail(spec, self._error_payload(TaskCancelledError(task_id.hex())))

    def _retryable(self, spec: TaskSpec, msg: p.TaskReply) -> bool:
        rule = spec.retry_exceptions
        if rule is True:
            return True
        if not rule:
            return False
        try:
            exc = serialization.deserialize_exception(msg.returns[0][1])
        except Exception:
            return False
        cause = getattr(exc, "cause", exc)
        return isinstance(cause, tuple(rule))

    def _linger_over(self, q: ShapeQueue, lease: Lease) -> None:
        lease.linger = None
        if not lease.in_flight and not lease.dead and lease.lease_id in q.leases:
            self._return_lease(q, lease)

    def _return_lease(self, q: ShapeQueue, lease: Lease) -> None:
        q.leases.pop(lease.lease_id, None)
        self.endpoint.send(self.node_address, p.ReturnLease(lease.lease_id, False))

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
                    self._fail(spec, self._error_payload(err))
            lease.in_flight.clear()
            self._pump(q)
            return

    # ====================================================================== wait
    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> tuple[list, list]:
        ready_ids: set[bytes] = set()
        done = threading.Event()
        lock = threading.Lock()

        def make_cb(ref: Any) -> Callable[[list], None]:
            def cb(_payload: list) -> None:
                with lock:
                    ready_ids.add(ref._id)
                    if len(ready_ids) >= num_returns:
                        done.set()
            return cb

        for ref in refs:
            if self.ready_now(ref):
                ready_ids.add(ref._id)
        if len(ready_ids) < num_returns:
            for ref in refs:
                if ref._id not in ready_ids:
                    self._when_ready(ref, make_cb(ref))
            if len(ready_ids) < num_returns and timeout != 0:
                blocked = self.on_block is not None
                if blocked:
                    self.on_block()
                try:
                    done.wait(timeout)
                finally:
                    if blocked:
                        self.on_unblock()
        with lock:
            snapshot = set(ready_ids)
        ready, not_ready = [], []
        for ref in refs:
            if ref._id in snapshot and len(ready) < num_returns:
                ready.append(ref)
            else:
                not_ready.append(ref)
        return ready, not_ready

    async def wait_async(self, refs: list, num_returns: int, timeout: float | None) -> tuple[list, list]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        ready_ids: set[bytes] = set()

        def on_ready(oid: bytes) -> None:
            ready_ids.add(oid)
            if len(ready_ids) >= num_returns and not fut.done():
                fut.set_result(None)

        for ref in refs:
            if self.ready_now(ref):
                ready_ids.add(ref._id)
        if len(ready_ids) < num_returns:
            for ref in refs:
                if ref._id not in ready_ids:
                    self._when_ready(ref, lambda _pl, oid=ref._id: _call_in(loop, on_ready, oid))
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            except asyncio.TimeoutError:
                pass
        snapshot = set(ready_ids)
        ready = [r for r in refs if r._id in snapshot][:num_returns]
        chosen = {r._id for r in ready}
        return ready, [r for r in refs if r._id not in chosen]

    # ====================================================================== teardown
    def close(self) -> None:
        self.closed = True
        self.mappings.clear()

    def set_job(self, job_id: int) -> None:
        if job_id != self.job_id:
            self.job_id = job_id
            self.task_ids = ids.TaskIdGenerator(ids.job_id_from_int(job_id))
