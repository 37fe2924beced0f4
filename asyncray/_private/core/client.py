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
import os
import threading
from collections import deque
from typing import Any, Callable, NamedTuple

from asyncray._private import ids, protocol as p, serialization
from asyncray._private.config import Config
from asyncray._private.core.common import PENDING, Entry, call_in, error_payload, oid_of_segment, peer_error
from asyncray._private.core.references import References, container_key
from asyncray._private.core.submitter import TaskSubmitter
from asyncray._private.object_store import segments
from asyncray._private.transport.sockets import Endpoint, Peer, local_address

logger = logging.getLogger(__name__)


class _Pending(NamedTuple):
    """A request waiting for its reply."""

    on_reply: Callable[[Any], None]
    on_peer_died: Callable[[str, str], None] | None
    address: str


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
        self._released: deque[bytes] = deque()
        self._release_wakeup = False
        self._to_free: list[list] = []  # payloads of stored objects to free, sent after the lock
        self.node_id = b""  # our node's id (stored objects carry it)
        self.node_addresses: dict[bytes, str] = {}  # other nodes we leased from: id -> address
        self.registered_nodes: set[str] = set()  # other nodes that know us (RegisterClient)
        self._dead_node_dirs: dict[str, str] = {}  # socket directory of a dead node -> why
        self._outbox: list[tuple[str, Any]] = []  # messages decided under the lock, sent after it
        self._borrow_state = threading.local()
        self.mappings = segments.MappingCache(on_keep=self._arm_mapping_sweep)
        self._sweep_armed = False
        self._req_ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._pending_at: dict[str, set[int]] = {}  # address -> requests that fail if it dies
        self.dead_peers: dict[str, str] = {}  # address -> why (from PeerDied)
        self._fetching: set[bytes] = set()
        self._borrower_waits: dict[bytes, list[tuple[Peer, int]]] = {}
        self.closed = False
        self.submitter = TaskSubmitter(self)
        from asyncray._private.core.actor_submitter import ActorSubmitter

        self.actor_submitter = ActorSubmitter(self)
        self.head_address = ""
        self.removed_placement_groups: set[bytes] = set()  # removed by this process: refused at submit
        self._free_hooks: dict[bytes, Callable[[], None]] = {}  # owned ids -> run when freed
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
        drop = []
        while released:
            drop.append(released.popleft())
        self.drop_refs(drop)

    def drop_refs(self, oids: list[bytes]) -> None:
        """Loop thread: release one local ref on each of `oids`, freeing what nothing holds."""
        refs = self.refs
        with self.lock:
            for oid in oids:
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
            hook = self._free_hooks.pop(oid, None)
            if hook is not None:
                self._outbox.append(hook())
            if entry.payload[0] == p.SHM:
                self._to_free.append(entry.payload)
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
            self.free_stored(to_free)
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
        self.submitter.fail_all(self._error_payload(peer_error(self.node_address, reason, self.node_address)))
        self.on_peer_died(p.PeerDied(self.node_address, reason), None)  # type: ignore[arg-type]

    # -- actor handle tokens -------------------------------------------------------------------
    def new_token(self, actor_id: bytes) -> Any:
        """An owned object standing for every handle to `actor_id`: handles carry it, pickled
        handles borrow it, and when nothing holds it any more the actor is killed (Ray's
        handle-count lifetime for non-detached actors)."""
        from asyncray.object_ref import ObjectRef

        oid = ids.object_id(self.task_ids.next_task_id(), 0)
        entry = Entry(owned=True)
        entry.payload = [p.INLINE, serialization.serialize(None).to_bytes()]
        with self.lock:
            self.objects[oid] = entry
            self._free_hooks[oid] = lambda: (self.head_address, p.KillActor(actor_id, True))
        return ObjectRef(oid, self.address, self)

    def _request_head(self, msg: Any) -> None:
        self.endpoint.send(self.head_address, msg)

    def on_peer_died(self, msg: p.PeerDied, peer: Peer) -> None:
        """A process on our node died: what we wait for from it fails; its borrows go."""
        self.dead_peers[msg.address] = msg.reason
        if msg.address in self.registered_nodes or msg.address in self.node_addresses.values():
            self.registered_nodes.discard(msg.address)
            for node_id in [n for n, a in self.node_addresses.items() if a == msg.address]:
                del self.node_addresses[node_id]  # what it stored is gone with it: nothing to free
            self.submitter.on_node_died(msg.address, msg.reason)
            self._node_processes_died(msg.address, msg.reason)
        self.actor_submitter.on_peer_died(msg.address)
        self.endpoint.disconnect(msg.address)
        for rid in list(self._pending_at.get(msg.address, ())):
            self._forget(rid).on_peer_died(msg.address, msg.reason)
        with self.lock:
            for oid in self.refs.remove_borrower_everywhere(msg.address):
                self._maybe_free(oid)
        self._flush_frees()

    # -- nodes -----------------------------------------------------------------------------------
    def node_of(self, payload: list) -> str | None:
        """The address of the node whose store holds a stored value (None: a node we have not
        heard of yet; see learn_nodes)."""
        node = payload[3]
        if not node or node == self.node_id:
            return self.node_address
        return self.node_addresses.get(node)

    def learn_nodes(self, nodes: list) -> None:
        """Node addresses from the head's node table (GetNodes / RegisterJob replies)."""
        for node_id, address, _resources, alive in nodes:
            if alive and node_id != self.node_id:
                self.node_addresses[node_id] = local_address(address)

    def free_stored(self, payloads: list) -> None:
        """Loop thread: free stored values, each in the store of the node that holds it. A
        value stored on a node we do not know yet (an actor's result, from a node the head
        placed it on) waits for the head's node table."""
        by_node: dict[str, list[bytes]] = {}
        unknown: list = []
        for pl in payloads:
            address = self.node_of(pl)
            if address is None:
                unknown.append(pl)
            elif address not in self.dead_peers:
                by_node.setdefault(address, []).append(oid_of_segment(pl[1]))
        for address, oids in by_node.items():
            self.endpoint.send(address, p.FreeObjects(oids))
        if unknown and self.head_address:
            def learned(msg: p.NodesReply) -> None:
                self.learn_nodes(msg.nodes)
                known = [pl for pl in unknown if self.node_of(pl) is not None]  # else: that node is gone
                if known:
                    self.free_stored(known)

            self._request(self.head_address, lambda rid: p.GetNodes(rid), learned)

    def node_of_now(self, payload: list) -> str:
        """Any thread but the loop's: node_of, asking the head if the node is new to us."""
        address = self.node_of(payload)
        if address is None:
            self.learn_nodes(self.call(self.head_address, lambda rid: p.GetNodes(rid), timeout=30).nodes)
            address = self.node_of(payload) or self.node_address
        return address

    def ensure_registered(self, address: str) -> None:
        """Loop thread: before leasing from another node, introduce ourselves to it (it then
        watches our process and frees what we leave behind); ordered before the request."""
        if address != self.node_address and address not in self.registered_nodes:
            self.registered_nodes.add(address)
            self.endpoint.send(address, p.RegisterClient(0, self.endpoint.identity, os.getpid(), self.address,
                                                         self.job_id))

    def owns_objects(self) -> bool:
        """Whether anything this process owns is still referenced (asked rarely: when the node
        considers ending this worker as idle)."""
        with self.lock:
            return any(entry.owned for entry in self.objects.values())

    def _on_dead_node(self, address: str) -> bool:
        """Whether `address` is a process of a node that died (recorded as a dead peer if so)."""
        for prefix, reason in self._dead_node_dirs.items():
            if address.startswith(prefix):
                self.dead_peers[address] = reason
                return True
        return False

    def _node_processes_died(self, node_address: str, reason: str) -> None:
        """A node died with all its workers, and nobody is left there to announce each one:
        every peer of ours on it is dead too. On one machine a node's processes have their
        ipc sockets in the node's session directory (other hosts come with the cluster issue)."""
        if not node_address.startswith("ipc://"):
            return
        prefix = node_address.rsplit("/", 1)[0] + "/"
        self._dead_node_dirs[prefix] = reason  # peers there we only hear of later are dead too
        with self.lock:
            borrowers = {b for bs in self.refs.borrowers.values() for b in bs}
            owners = set(self.refs.borrowed.values())
        known = set(self._pending_at) | borrowers | owners | {
            s.address for s in self.actor_submitter.actors.values() if s.address}
        for address in known:
            if address.startswith(prefix) and address not in self.dead_peers:
                self.on_peer_died(p.PeerDied(address, reason), None)  # type: ignore[arg-type]

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
                        self.free_stored([payload])
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
        fetch = False
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None and ref._owner == self.address:
                # Ours, and already freed (a ref pickled outside the runtime and loaded back).
                from asyncray.exceptions import ObjectFreedError

                payload: list | None = self._error_payload(ObjectFreedError(oid.hex()))
            else:
                if entry is None:
                    entry = self.objects[oid] = Entry(owned=False)
                payload = entry.payload
                if payload is PENDING:
                    if entry.callbacks is None:
                        entry.callbacks = [cb]
                    else:
                        entry.callbacks.append(cb)
                    fetch = not entry.owned and oid not in self._fetching
        if payload is not PENDING:
            cb(payload)
        elif fetch:
            self.endpoint.call_threadsafe(self._fetch, oid, ref._owner)

    def _start_fetch(self, ref: Any) -> None:
        with self.lock:
            if ref._id in self.objects or ref._id in self._fetching:
                return
            self.objects[ref._id] = Entry(owned=False)
        self.endpoint.call_threadsafe(self._fetch, ref._id, ref._owner)

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

    _error_payload = staticmethod(error_payload)

    # ====================================================================== requests
    def _request(self, address: str, make: Callable[[int], Any], on_reply: Callable[[Any], None],
                 owner_failed: Callable[[str, str], None] | None = None) -> int:
        """Send a request; on_reply gets the answer, or owner_failed an error if the peer dies."""
        if owner_failed is not None and (address in self.dead_peers or self._on_dead_node(address)):
            owner_failed(address, self.dead_peers[address])
            return 0
        rid = next(self._req_ids)
        self._pending[rid] = _Pending(on_reply, owner_failed, address)
        if owner_failed is not None:
            self._pending_at.setdefault(address, set()).add(rid)
        self.endpoint.send(address, make(rid))
        return rid

    def _forget(self, rid: int) -> _Pending | None:
        """Stop waiting for request `rid`; returns what waited for it, if anything did."""
        pending = self._pending.pop(rid, None)
        if pending is not None and pending.on_peer_died is not None:
            waiting = self._pending_at[pending.address]
            waiting.discard(rid)
            if not waiting:
                del self._pending_at[pending.address]
        return pending

    def forget_request(self, rid: int) -> None:
        """Stop waiting for a reply (a late one is then handled by on_reply's fallback)."""
        self._forget(rid)

    def on_reply(self, msg: Any, peer: Peer) -> None:
        pending = self._forget(msg.req_id)
        if pending is not None:
            pending.on_reply(msg)
        elif type(msg) is p.LeaseGranted:  # granted after we cancelled the request: give it back
            peer.answer(p.ReturnLease(msg.lease_id, False))

    def call(self, address: str, make: Callable[[int], Any], timeout: float | None = None) -> Any:
        """Any thread but the loop's: send a request and wait for its reply."""
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def peer_died(addr: str, reason: str) -> None:
            if not fut.done():
                fut.set_exception(peer_error(addr, reason, self.node_address))

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

        watched = [(refs[i], make_cb(i)) for i in missing]
        for ref, cb in watched:
            self._when_ready(ref, cb)
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
                if not done.is_set():  # timed out or interrupted: leave no callback behind
                    self._unwatch(watched)
        return out  # type: ignore[return-value]

    def _unwatch(self, watched: list) -> None:
        """Remove callbacks that have not fired (a get or wait that gave up)."""
        with self.lock:
            for ref, cb in watched:
                entry = self.objects.get(ref._id)
                if entry is not None and entry.callbacks:
                    try:
                        entry.callbacks.remove(cb)
                    except ValueError:
                        pass

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
        oid = oid_of_segment(payload[1])
        reply = self.call(self.node_of_now(payload), lambda rid: p.RestoreObject(rid, oid), timeout=300)
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
                self._when_ready(ref, lambda pl, i=i: call_in(loop, on_payload, i, pl))
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

    def ref_from_request(self, address: str, make: Callable[[int], Any], to_payload: Callable[[Any], list]) -> Any:
        """Any thread: an ObjectRef we own whose value is `to_payload(reply)` of a request (the
        reply arrives whenever the peer decides, e.g. when a placement group is created). If
        the peer dies first, the ref raises the peer's death."""
        from asyncray.object_ref import ObjectRef

        oid = ids.object_id(self.task_ids.next_task_id(), 1)
        with self.lock:
            self.objects[oid] = Entry(owned=True)
        ref = ObjectRef(oid, self.address, self)

        def failed(addr: str, reason: str) -> None:
            self._set_payload(oid, self._error_payload(peer_error(addr, reason, self.node_address)))

        self.endpoint.call_threadsafe(self._request, address, make, lambda msg: self._set_payload(oid, to_payload(msg)),
                                      failed)
        return ref

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
        return [p.SHM, reply.segment, ser.size, self.node_id]

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
        if len(ready_ids) < num_returns and timeout == 0:
            for ref in refs:  # a poll registers nothing; it only starts fetching borrowed refs
                if ref._id not in ready_ids and ref._owner != self.address:
                    self._start_fetch(ref)
        elif len(ready_ids) < num_returns:
            watched = [(ref, make_cb(ref)) for ref in refs if ref._id not in ready_ids]
            for ref, cb in watched:
                self._when_ready(ref, cb)
            blocked = self.on_block is not None and len(ready_ids) < num_returns
            if blocked:
                self.on_block()
            try:
                done.wait(timeout)
            finally:
                if blocked:
                    self.on_unblock()
                self._unwatch(watched)
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
                    self._when_ready(ref, lambda _pl, oid=ref._id: call_in(loop, on_ready, oid))
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
