"""The node manager process: owns the node's resources, worker pool and object store.

It is *not* on the path of tasks: an owner asks it for a worker lease for a resource shape,
then pushes tasks straight to the leased worker. It sees one RequestLease per worker an owner
needs, ReturnLease when the owner's queue drains, and the object store's create/free traffic.

Resource handling: resources are held by leases; a worker blocked in `get` lends its CPUs
back until it unblocks (so nested tasks cannot deadlock the node).
Error handling: a worker's death (reported by the template) releases its lease's resources and
tells the lease holder, which retries or fails the tasks it had pushed; an owner's death (its
pid watched through a pidfd, or its worker exit) cancels its requests, kills its leased workers
and frees its objects. EOF on the liveness pipe from our parent stops the node.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import sys
from typing import Any

from asyncray._private import process, protocol as p
from asyncray._private.ids import random_id
from asyncray._private.node.resources import ResourcePool, to_units
from asyncray._private.node.scheduler import LeaseRequest, LeaseScheduler
from asyncray._private.node.worker_pool import PRESTARTED, WorkerPool, WorkerRecord, env_key
from asyncray._private.object_store import segments
from asyncray._private.object_store.store import ObjectStore, StoreFull
from asyncray._private.scheduling import bundles
from asyncray._private.scheduling.cluster import SPREAD, ClusterView, Decision, NodeAffinity
from asyncray._private.transport.sockets import Endpoint, Peer

logger = logging.getLogger("asyncray.node")


class Lease:
    __slots__ = ("lease_id", "owner", "worker", "units", "lent", "gpu_ids")

    def __init__(self, lease_id: int, owner: bytes, worker: WorkerRecord, units: dict[str, int]) -> None:
        self.lease_id = lease_id
        self.owner = owner
        self.worker = worker
        self.units = units
        self.lent: dict[str, int] = {}  # CPUs lent back while the worker is blocked in get
        self.gpu_ids: list[int] = []


class NodeManager:
    def __init__(self, args: dict, loop: asyncio.AbstractEventLoop) -> None:
        self.args = args
        self.loop = loop
        self.session = args["session"]
        self.session_dir = args["session_dir"]
        self.config = args["config"]
        self.node_id = bytes.fromhex(args["node_id"])
        self.stopped = asyncio.Event()
        self.registered: asyncio.Future = loop.create_future()
        self.endpoint = Endpoint(loop, self.node_id, self.handle, on_unroutable=self._unroutable)
        self.ipc_address = self.endpoint.bind(f"ipc://{self.session_dir}/node.sock")
        self.tcp_address = self.endpoint.bind(f"tcp://{args.get('host', '127.0.0.1')}:*")
        self.resources = dict(args["resources"])
        self.scheduler = LeaseScheduler(ResourcePool(self.resources))
        self.store = ObjectStore(int(args["object_store_memory"]))
        self.spill_dir = os.path.join(self.session_dir, "spill")
        self.leases: dict[int, Lease] = {}
        # Unique across the cluster (owners and the head hold leases of several nodes by id):
        # this node's id in the high bits, a counter in the low ones.
        self._lease_ids = itertools.count((int.from_bytes(self.node_id[:4], "big") << 32) + 1)
        self.starting: dict[bytes, LeaseRequest] = {}  # worker being forked for this request
        self.clients: dict[bytes, tuple[int, str, Any]] = {}  # identity -> (pid, address, unwatch)
        live_r, self._live_w = process.liveness_pipe()  # ties template and workers to us
        self.pool = WorkerPool(self.session_dir, live_r, self._on_pool_event, loop,
                               os.path.join(self.session_dir, "logs"), self.config)
        os.close(live_r)
        parent_live = args.get("liveness_fd")
        if parent_live is not None:
            loop.add_reader(parent_live, self._parent_gone)
        self._handlers = {
            p.RegisterWorker: self.on_register_worker,
            p.RegisterClient: self.on_register_client,
            p.RequestLease: self.on_request_lease,
            p.CancelLeaseRequest: self.on_cancel_lease_request,
            p.ReturnLease: self.on_return_lease,
            p.WorkerBlocked: self.on_worker_blocked,
            p.WorkerUnblocked: self.on_worker_unblocked,
            p.CreateObject: self.on_create_object,
            p.SealObject: self.on_seal_object,
            p.FreeObjects: self.on_free_objects,
            p.GetResources: self.on_get_resources,
            p.ShutdownNode: self.on_shutdown,
            p.RegisterNodeReply: self.on_register_node_reply,
            p.UnregisterClient: self.on_unregister_client,
            p.RestoreObject: self.on_restore_object,
            p.ReserveBundles: self.on_reserve_bundles,
            p.ReleaseBundles: self.on_release_bundles,
            p.CommitBundles: self.on_commit_bundles,
            p.ClusterUpdate: self.on_cluster_update,
            p.ReapReply: self.on_reap_reply,
            p.PeerDied: self.on_peer_died,
        }
        self.num_cpus = int(self.resources.get("CPU", 0))
        self.free_gpus: list[int] = list(range(int(self.resources.get("GPU", 0))))
        # The nodes a lease may go to, for strategies (this node only until the cluster view
        # reaches nodes) and the placement group bundles reserved here: group hex -> bundles.
        self.view = ClusterView()
        self.view.add_node(self.node_id, self.scheduler.pool.total)
        self.bundles: dict[str, dict[int, dict[str, int]]] = {}  # group hex -> index -> units (committed)
        self.prepared: dict[str, dict[int, dict[str, int]]] = {}  # set aside, not usable until committed
        self.removed_groups: set[str] = set()
        self.node_addrs: dict[bytes, str] = {}  # the other nodes, from the head's ClusterUpdate
        self._report_due = False

    # -- start-up ------------------------------------------------------------------------------
    def on_register_node_reply(self, msg: p.RegisterNodeReply, peer: Peer) -> None:
        if not self.registered.done():
            self.registered.set_result(msg.incarnation)

    async def start(self) -> None:
        await self.loop.run_in_executor(None, self.pool.wait_template, self.config["startup_timeout_s"])
        for _ in range(max(self.num_cpus, 1)):
            self._start_worker(PRESTARTED, None, None)
        self.loop.call_later(1.0, self._reap_idle)

    def _start_worker(self, key: str, job_id: int | None, runtime_env: Any) -> WorkerRecord:
        wid = random_id()
        return self.pool.start(wid, key, job_id, runtime_env, {
            "node_id": self.node_id.hex(), "node_address": self.ipc_address, "session": self.session,
            "head_address": self.args.get("head_address", "")})

    # -- dispatch --------------------------------------------------------------------------------
    def handle(self, msg: Any, peer: Peer) -> None:
        self._handlers[type(msg)](msg, peer)

    def _unroutable(self, identity: bytes, msgs: list) -> None:
        logger.info("peer %s is gone; dropped %d message(s) for it", identity.hex()[:12], len(msgs))

    # -- workers ---------------------------------------------------------------------------------
    def on_register_worker(self, msg: p.RegisterWorker, peer: Peer) -> None:
        rec = self.pool.workers.get(msg.worker_id)
        if rec is None:  # killed while starting
            return
        rec.registered = True
        rec.address = msg.address
        rec.pid = msg.pid
        self.pool.by_pid[msg.pid] = rec
        req = self.starting.pop(msg.worker_id, None)
        if req is not None:
            self._grant(req, rec)
        else:
            self.pool.push_idle(rec)
            self._dispatch()

    def _on_pool_event(self, ev: dict) -> None:
        if ev["event"] == "template_exited":
            if not self.stopped.is_set():
                logger.error("the worker template exited; stopping the node")
                self.loop.create_task(self.shutdown())
            return
        if ev["event"] != "exited" or not ev.get("worker_id"):
            return
        wid = bytes.fromhex(ev["worker_id"])
        rec = self.pool.remove(wid)
        if rec is None:
            return
        status = ev["status"]
        reason = f"worker process {ev['pid']} exited with {'signal ' + str(-status) if status < 0 else 'code ' + str(status)}"
        if rec.lease_id is not None:
            lease = self.leases.pop(rec.lease_id)
            self._release(lease)
            self.endpoint.reply(lease.owner, p.LeaseWorkerDied(lease.lease_id, reason))
        req = self.starting.pop(wid, None)
        if req is not None:  # died before registering: retry a few times, then say why
            self.scheduler.pool.release(req.units)
            req.start_failures += 1
            if req.start_failures < 3:
                self.scheduler.submit(req)
            else:
                from asyncray._private.serialization import dumps_exception
                from asyncray.exceptions import RuntimeEnvSetupError

                err = RuntimeEnvSetupError(
                    f"A worker for this task died {req.start_failures} times before it could start ({reason}); "
                    f"its runtime_env may be broken (a working_dir that no longer exists?): {req.runtime_env}. "
                    f"See the worker logs in {self.session_dir}/logs.")
                self.endpoint.reply(req.owner, p.LeaseFailed(req.req_id, dumps_exception(err)))
        self._owner_gone(wid, rec.address)
        if rec.address:
            # Whoever waits on it (objects it owns) or counts it as a borrower must know.
            self._tell_local(p.PeerDied(rec.address, reason))
        self._dispatch()

    # -- leases ----------------------------------------------------------------------------------
    def on_request_lease(self, msg: p.RequestLease, peer: Peer) -> None:
        shape = {k: float(v) for k, v in msg.shape.items()}
        if self._group_removed(shape):
            self._lease_failed(peer.identity, msg.req_id, self._group_removed_error())
            return
        req = LeaseRequest(msg.req_id, peer.identity, shape, {}, msg.job_id, msg.runtime_env, msg.strategy)
        if msg.strategy is not None or len(self.view.nodes) > 1:
            decision = self._decide(req)
            if decision.unschedulable:
                from asyncray.exceptions import TaskUnschedulableError

                self._lease_failed(peer.identity, msg.req_id, TaskUnschedulableError(decision.unschedulable))
                return
            if decision.node_id is not None and decision.node_id != self.node_id:
                self._spill(req, decision.node_id)
                return
        self._queue(req)
        self._dispatch()

    def _queue(self, req: LeaseRequest) -> None:
        self.scheduler.submit(req)
        for bad in self.scheduler.newly_infeasible():
            if any(bundles.group_of(k) for k in bad.shape):
                continue  # it waits for its placement group's bundles, not for a node
            missing = self.scheduler.pool.missing(bad.units)
            logger.warning("a lease needs %s but no node has that much: it stays pending until a node that fits "
                           "joins", bad.shape)
            self.endpoint.reply(bad.owner, p.LeaseInfeasible(bad.req_id, missing, self.resources))

    def _decide(self, req: LeaseRequest) -> Decision:
        """Where a lease should go, by the cluster scheduling logic (node_id None: no node can
        hold it yet, so it waits here)."""
        self.view.set_free(self.node_id, self.scheduler.pool.free)
        wire = req.strategy
        strategy = None if wire is None else SPREAD if wire == SPREAD else NodeAffinity(*wire[1:])
        return self.view.pick(to_units(req.shape), strategy, local=self.node_id)

    def _spill(self, req: LeaseRequest, target: bytes) -> None:
        self.view.acquire(target, to_units(req.shape))  # counted there until its next update
        self.endpoint.reply(req.owner, p.LeaseSpillback(req.req_id, target, self.node_addrs[target]))

    # -- the other nodes -------------------------------------------------------------------------
    def on_cluster_update(self, msg: p.ClusterUpdate, peer: Peer) -> None:
        for node_id, address, total, free in msg.nodes:
            if node_id == self.node_id:
                continue
            if node_id in self.view.nodes:
                self.view.set_total(node_id, total, free)
            else:
                self.view.add_node(node_id, total, free)
            self.node_addrs[node_id] = address
        for node_id in msg.dead:
            self.view.remove_node(node_id)
            self.node_addrs.pop(node_id, None)
        self._respill()

    def _respill(self) -> None:
        """The view changed: requests queued here that cannot be granted now go to a node
        where they fit now (or, if this node can never hold them, where they could), as Ray's
        raylet moves its queued work. A queue is looked at by its oldest request, per shape."""
        pool = self.scheduler.pool
        staying: set[tuple] = set()  # shapes for which nowhere better was found: the rest stay too
        for req in self.scheduler.cancel_where(lambda r: not pool.fits(r.units)):
            if req.key not in staying:
                decision = self._decide(req)
                target = decision.node_id
                if target is not None and target != self.node_id and (
                        decision.available or not pool.feasible(req.units)):
                    self._spill(req, target)
                    continue
                staying.add(req.key)
            self.scheduler.submit(req)

    def on_peer_died(self, msg: p.PeerDied, peer: Peer) -> None:
        """From the head: a node died. Our processes may hold leases or objects there."""
        self._tell_local(msg)

    def _tell_local(self, msg: Any) -> None:
        for identity in list(self.clients) + [w for w, r in self.pool.workers.items() if r.registered]:
            self.endpoint.reply(identity, msg)

    def _lease_failed(self, owner: bytes, req_id: int, error: BaseException) -> None:
        from asyncray._private.serialization import dumps_exception

        self.endpoint.reply(owner, p.LeaseFailed(req_id, dumps_exception(error)))

    def _group_removed(self, shape: dict) -> bool:
        return bool(self.removed_groups) and any(bundles.group_of(k) in self.removed_groups for k in shape)

    @staticmethod
    def _group_removed_error() -> BaseException:
        from asyncray.exceptions import TaskPlacementGroupRemoved

        return TaskPlacementGroupRemoved()

    # -- placement group bundles -----------------------------------------------------------------
    def on_reserve_bundles(self, msg: p.ReserveBundles, peer: Peer) -> None:
        """Prepare (Ray's two-phase commit): the resources are set aside, but no work can be
        placed in the bundles until the head commits them, so an attempt the head undoes
        (another node refused) never has work running in it."""
        pool = self.scheduler.pool
        pg_hex = msg.pg_id.hex()
        need: dict[str, int] = {}
        for _index, units in msg.bundles:
            for k, v in units.items():
                need[k] = need.get(k, 0) + v
        ok = pg_hex not in self.removed_groups and pool.fits(need)
        if ok:
            pool.acquire(need)
            self.prepared.setdefault(pg_hex, {}).update((index, units) for index, units in msg.bundles)
            self.view.set_total(self.node_id, pool.total, pool.free)
        peer.answer(p.ReserveBundlesReply(msg.req_id, ok, pool.total, pool.free))

    def on_commit_bundles(self, msg: p.CommitBundles, peer: Peer) -> None:
        pool = self.scheduler.pool
        pg_hex = msg.pg_id.hex()
        prepared = self.prepared.get(pg_hex, {})
        held = self.bundles.setdefault(pg_hex, {})
        for index in msg.indices:
            units = prepared.pop(index, None)
            if units is not None:
                pool.grow(bundles.reserved_resources(pg_hex, index, units))
                held[index] = units
        if not prepared:
            self.prepared.pop(pg_hex, None)
        if not held:
            self.bundles.pop(pg_hex, None)
        self.view.set_total(self.node_id, pool.total, pool.free)
        self._report_resources()
        self._dispatch()  # work may be waiting for these bundles

    def on_release_bundles(self, msg: p.ReleaseBundles, peer: Peer) -> None:
        pg_hex = msg.pg_id.hex()
        pool = self.scheduler.pool
        if msg.removed:
            self.removed_groups.add(pg_hex)
            error = self._group_removed_error()
            for req in self.scheduler.cancel_where(lambda r: any(bundles.group_of(k) == pg_hex for k in r.shape)):
                self._lease_failed(req.owner, req.req_id, error)
            for lease in [ls for ls in self.leases.values() if any(bundles.group_of(k) == pg_hex for k in ls.units)]:
                self._end_lease(lease)  # what runs in the group ends
                self.endpoint.reply(lease.owner, p.LeaseWorkerDied(
                    lease.lease_id, f"its placement group {pg_hex} was removed"))
        held = self.bundles.get(pg_hex, {})
        prepared = self.prepared.get(pg_hex, {})
        indices = [i for i in ([*held, *prepared] if msg.indices is None else msg.indices) if i in held or i in prepared]
        for index in indices:
            if index in held:
                units = held.pop(index)
                pool.shrink(bundles.reserved_resources(pg_hex, index, units))
            else:
                units = prepared.pop(index)
            pool.release(units)
        if not held:
            self.bundles.pop(pg_hex, None)
        if not prepared:
            self.prepared.pop(pg_hex, None)
        if indices:
            self.view.set_total(self.node_id, pool.total, pool.free)
        if msg.req_id:
            peer.answer(p.ReserveBundlesReply(msg.req_id, True, pool.total, pool.free))
        if indices:
            self._dispatch()

    def _report_resources(self) -> None:
        """Tell the head what is free now (it places groups by it), at most every 50 ms."""
        if self._report_due or not self.args.get("head_address"):
            return
        self._report_due = True

        def send() -> None:
            self._report_due = False
            pool = self.scheduler.pool
            self.endpoint.send(self.args["head_address"], p.ResourceReport(self.node_id, pool.total, pool.free))

        self.loop.call_later(0.05, send)

    def on_cancel_lease_request(self, msg: p.CancelLeaseRequest, peer: Peer) -> None:
        self.scheduler.cancel(peer.identity, msg.req_id)

    def _dispatch(self) -> None:
        self._report_resources()
        for req in self.scheduler.dispatch():
            key = env_key(req.job_id, req.runtime_env)
            rec = self.pool.pop_idle(key, claim_prestarted=req.runtime_env is None)
            if rec is not None:
                self._grant(req, rec)
            else:
                rec = self._start_worker(key, req.job_id, req.runtime_env)
                self.starting[rec.worker_id] = req

    def _grant(self, req: LeaseRequest, rec: WorkerRecord) -> None:
        lease = Lease(next(self._lease_ids), req.owner, rec, req.units)
        if req.owner not in self.clients and req.owner not in self.pool.workers:
            # The owner vanished while we forked for it: the resources go to the next request
            # (dispatched soon, not here: we may be inside _dispatch's loop).
            self.scheduler.pool.release(req.units)
            self.pool.push_idle(rec)
            self.loop.call_soon(self._dispatch)
            return
        if self._group_removed(req.shape):  # removed while we forked for it
            self.scheduler.pool.release(req.units)
            self.pool.push_idle(rec)
            self._lease_failed(req.owner, req.req_id, self._group_removed_error())
            return
        self.leases[lease.lease_id] = lease
        rec.lease_id = lease.lease_id
        lease.gpu_ids = self._take_gpus(_gpus(req.shape))
        self.endpoint.reply(req.owner, p.LeaseGranted(req.req_id, lease.lease_id, rec.worker_id, rec.address,
                                                      lease.gpu_ids))

    def _take_gpus(self, gpus: float) -> list[int]:
        """GPU ids for a lease: whole GPUs are taken from the free list; a fraction shares one."""
        if gpus <= 0:
            return []
        if gpus < 1:
            return [self.free_gpus[0]] if self.free_gpus else [0]
        n = int(gpus)
        taken, self.free_gpus = self.free_gpus[:n], self.free_gpus[n:]
        return taken

    def _release(self, lease: Lease) -> None:
        if _gpus(lease.units) >= 10_000:  # whole GPUs go back to the free list
            self.free_gpus = sorted(set(self.free_gpus) | set(lease.gpu_ids))
        units = dict(lease.units)
        for k, v in lease.lent.items():
            units[k] -= v
        self.scheduler.pool.release(units)

    def on_return_lease(self, msg: p.ReturnLease, peer: Peer) -> None:
        lease = self.leases.pop(msg.lease_id, None)
        if lease is None:
            return
        self._release(lease)
        rec = lease.worker
        if msg.kill_worker or rec.worker_id not in self.pool.workers:
            rec.lease_id = None
            self._kill_worker(rec)
        else:
            self.pool.push_idle(rec)
        self._dispatch()

    def on_worker_blocked(self, msg: p.WorkerBlocked, peer: Peer) -> None:
        rec = self.pool.workers.get(msg.worker_id)
        if rec is None or rec.lease_id is None or rec.blocked:
            return
        rec.blocked = True
        lease = self.leases[rec.lease_id]
        lease.lent = {k: v for k, v in lease.units.items() if k == "CPU"}
        self.scheduler.pool.release(lease.lent)
        self._dispatch()

    def on_worker_unblocked(self, msg: p.WorkerUnblocked, peer: Peer) -> None:
        rec = self.pool.workers.get(msg.worker_id)
        if rec is None or not rec.blocked:
            return
        rec.blocked = False
        lease = self.leases.get(rec.lease_id) if rec.lease_id is not None else None
        if lease is not None:
            # May oversubscribe briefly, as in Ray: the task needs its CPU back to go on.
            self.scheduler.pool.acquire(lease.lent)
            lease.lent = {}

    def _end_lease(self, lease: Lease) -> None:
        """End a lease from here: its resources go back and its worker is killed (the worker's
        exit is then an ordinary death, announced as for any other)."""
        del self.leases[lease.lease_id]
        self._release(lease)
        lease.worker.lease_id = None
        self._kill_worker(lease.worker)

    def _kill_worker(self, rec: WorkerRecord) -> None:
        """Kill a worker but keep its record until the template reports the exit: that event
        announces the death (PeerDied) and frees what it owned, as for any other death."""
        rec.dying = True
        self.pool.kill(rec)

    def _reap_idle(self) -> None:
        if self.stopped.is_set():
            return
        for rec in self.pool.stale_idle(self.num_cpus, self.config["idle_worker_timeout_s"]):
            # It may own objects others still use (a put whose ref it returned): ask first.
            rec.reaping = True
            self.endpoint.reply(rec.worker_id, p.ReapIfIdle(rec.worker_id))
        self.loop.call_later(1.0, self._reap_idle)

    def on_reap_reply(self, msg: p.ReapReply, peer: Peer) -> None:
        rec = self.pool.workers.get(msg.worker_id)
        if rec is None or not rec.reaping:
            return
        rec.reaping = False
        if msg.owns:  # kept, and asked again after another idle period
            if rec.lease_id is None and not rec.dying:
                self.pool.keep_idle(rec)
        elif rec.lease_id is None and not rec.dying:
            self._kill_worker(rec)

    # -- clients (drivers) -----------------------------------------------------------------------
    def on_register_client(self, msg: p.RegisterClient, peer: Peer) -> None:
        unwatch = process.watch_exit(self.loop, msg.pid, lambda: self._client_died(peer.identity))
        self.clients[peer.identity] = (msg.pid, msg.address, unwatch)
        total = self.store.capacity
        peer.answer(p.RegisterClientReply(msg.req_id, self.node_id, total))

    def on_unregister_client(self, msg: p.UnregisterClient, peer: Peer) -> None:
        peer.answer(p.UnregisterClientReply(msg.req_id))
        self._client_died(peer.identity)

    def _client_died(self, identity: bytes) -> None:
        _pid, address, unwatch = self.clients.pop(identity, (0, "", lambda: None))
        unwatch()
        self._owner_gone(identity, address)
        self._dispatch()

    def _owner_gone(self, identity: bytes, address: str) -> None:
        if address and self.args.get("head_address"):
            self.endpoint.send(self.args["head_address"], p.OwnerDied(address))  # its actors go too
        self.scheduler.cancel_owner(identity)
        for lease in [ls for ls in self.leases.values() if ls.owner == identity]:
            self._end_lease(lease)
        if address:
            for obj in self.store.free_owner(address):
                self._drop(obj, background=True)

    # -- objects ---------------------------------------------------------------------------------
    def on_create_object(self, msg: p.CreateObject, peer: Peer) -> None:
        name = segments.segment_name(self.session, msg.object_id)
        # A retried task writes its return again; the earlier attempt's copy never reached its
        # owner (or is byte-identical, for a re-yielded stream item), so replace it.
        self._drop(self.store.free(msg.object_id))
        try:
            self._make_room(msg.size)
            self.store.reserve(msg.object_id, name, msg.size, msg.owner_address)
        except StoreFull as full:
            peer.answer(p.CreateObjectReply(msg.req_id, None, self._store_full(full)))
            return
        peer.answer(p.CreateObjectReply(msg.req_id, name, None))

    def _store_full(self, full: StoreFull) -> bytes:
        from asyncray._private.serialization import dumps_exception
        from asyncray.exceptions import ObjectStoreFullError

        return dumps_exception(ObjectStoreFullError(
            f"{full} Spilling to disk could not make room. Tip: free objects you no longer need (drop their "
            f"ObjectRefs), or start asyncray with a larger object_store_memory (now {self.store.capacity:,} bytes)."))

    def _make_room(self, size: int, keep: bytes | None = None) -> None:
        """Spill the oldest sealed objects to files until `size` more bytes fit (if they can)."""
        victims = self.store.to_spill(size, keep)
        if not victims:
            return
        os.makedirs(self.spill_dir, exist_ok=True)
        for obj in victims:
            path = os.path.join(self.spill_dir, obj.object_id.hex())
            segments.spill(obj.segment, path)
            segments.unlink(obj.segment)  # readers that still map it keep their pages
            self.store.mark_spilled(obj, path)
        logger.info("spilled %d object(s) to %s to make room for %d bytes", len(victims), self.spill_dir, size)

    def on_restore_object(self, msg: p.RestoreObject, peer: Peer) -> None:
        obj = self.store.objects.get(msg.object_id)
        if obj is None:
            from asyncray._private.serialization import dumps_exception
            from asyncray.exceptions import ObjectFreedError

            peer.answer(p.RestoreObjectReply(msg.req_id, dumps_exception(ObjectFreedError(msg.object_id.hex()))))
            return
        if obj.spilled is not None:
            try:
                self._make_room(obj.size, keep=obj.object_id)
                if self.store.used + obj.size > self.store.capacity:
                    raise StoreFull(obj.size, self.store.used, self.store.capacity, len(self.store.objects))
            except StoreFull as full:
                peer.answer(p.RestoreObjectReply(msg.req_id, self._store_full(full)))
                return
            segments.restore(obj.spilled, obj.segment)
            os.unlink(obj.spilled)
            self.store.mark_restored(obj)
        peer.answer(p.RestoreObjectReply(msg.req_id, None))

    def on_seal_object(self, msg: p.SealObject, peer: Peer) -> None:
        self.store.seal(msg.object_id)

    def on_free_objects(self, msg: p.FreeObjects, peer: Peer) -> None:
        for oid in msg.object_ids:
            self._drop(self.store.free(oid), background=True)

    def _drop(self, obj: Any, background: bool = False) -> None:
        """Remove a freed object's memory or file. Unlinking a large segment returns its pages
        to the kernel, which takes milliseconds per 100 MiB: for frees that happens off the loop,
        so a `put` waiting for CreateObject does not wait for the previous object's teardown.
        (Object ids are never reused, so a late unlink cannot hit a newer segment; the one case
        that re-creates a name, a retried task's return, unlinks in line.)"""
        if obj is None:
            return
        if obj.spilled is not None:
            try:
                os.unlink(obj.spilled)
            except FileNotFoundError:
                pass
        elif background:
            self.loop.run_in_executor(None, segments.unlink, obj.segment)
        else:
            segments.unlink(obj.segment)

    def on_get_resources(self, msg: p.GetResources, peer: Peer) -> None:
        total, available = self.scheduler.pool.snapshot()
        peer.answer(p.ResourcesReply(msg.req_id, total, available))

    # -- stopping --------------------------------------------------------------------------------
    def on_shutdown(self, msg: p.ShutdownNode, peer: Peer) -> None:
        async def stop() -> None:
            await self.shutdown()
            peer.answer(p.ShutdownNodeReply(msg.req_id))
            self.endpoint.flush()
            self.stopped.set()

        self.loop.create_task(stop())

    def _parent_gone(self) -> None:
        self.loop.remove_reader(self.args["liveness_fd"])
        self.loop.create_task(self.shutdown(final=True))

    async def shutdown(self, final: bool = False) -> None:
        if getattr(self, "_shut", False):
            if final:
                self.stopped.set()
            return
        self._shut = True
        self.pool.close()
        os.close(self._live_w)
        segments.unlink_session(self.session)
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        if final:
            # Our driver is gone (killed, or it never shut down): nobody else will remove the
            # session directory it made.
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.stopped.set()


def _gpus(shape: dict) -> float:
    """GPUs a lease holds: its own, or those it takes from a placement group bundle."""
    return shape.get("GPU") or max((v for k, v in shape.items() if k.startswith("GPU_group_")), default=0)


async def amain(args: dict) -> None:
    loop = asyncio.get_running_loop()
    node = NodeManager(args, loop)
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(node.shutdown(final=True)))
    await node.start()
    if args.get("head_address"):
        node.endpoint.send(args["head_address"], p.RegisterNode(
            1, node.node_id, node.tcp_address + "|" + node.ipc_address, node.resources, os.getpid()))
        # Ready means registered: a driver may list nodes or create actors right away.
        await asyncio.wait_for(node.registered, args["config"]["startup_timeout_s"])
    process.report_ready(args, {"ipc": node.ipc_address, "tcp": node.tcp_address, "node_id": node.node_id.hex(),
                                "pid": os.getpid()})
    await node.stopped.wait()
    await node.shutdown()
    node.endpoint.close()


def main() -> None:
    args = json.loads(sys.argv[1])
    # SIGTERM, not SIGKILL: the node must still unlink the session's segments on the way out.
    process.set_parent_death_signal(args["parent_pid"], signal.SIGTERM)
    logging.basicConfig(level=args.get("logging_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = process.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(amain(args))
    finally:
        segments.unlink_session(args["session"])


if __name__ == "__main__":
    main()
