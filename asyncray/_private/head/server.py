"""The head process: serves the cluster tables; never on the path of a task or an object.

Resource handling: one ROUTER socket (ipc and tcp), one SQLite snapshot written at the end of
each batch of messages, before the replies that depend on it leave.
Error handling: EOF on the liveness pipe from the process that started us stops the head.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from asyncray._private import process, protocol as p
from asyncray._private.head.actors import ActorRecord, ActorTable
from asyncray._private.head.group_manager import GroupManager
from asyncray._private.head.placement_groups import REMOVED
from asyncray._private.node.resources import to_units
from asyncray._private.scheduling.cluster import ClusterView, NodeAffinity
from asyncray._private.scheduling.strategy import spillback_strategy
from asyncray._private.head.snapshot import Snapshot
from asyncray._private.head.tables import NodeInfo, Tables
from asyncray._private.transport.sockets import Endpoint, Peer, local_address

logger = logging.getLogger("asyncray.head")


class HeadServer:
    def __init__(self, args: dict, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.args = args
        self.tables = Tables()
        self.snapshot = Snapshot(os.path.join(args["session_dir"], "head.sqlite"))
        self.incarnation = self.snapshot.restore(self.tables)
        self.stopped = asyncio.Event()
        self.endpoint = Endpoint(loop, b"head", self.handle)
        self.group_manager = GroupManager(self)
        self.ipc_address = self.endpoint.bind(f"ipc://{args['session_dir']}/head.sock")
        self.tcp_address = self.endpoint.bind(f"tcp://{args.get('host', '127.0.0.1')}:{args.get('port', 0) or '*'}")
        self._handlers = {
            p.RegisterNode: self.on_register_node,
            p.RegisterJob: self.on_register_job,
            p.JobFinished: self.on_job_finished,
            p.GetNodes: self.on_get_nodes,
            p.KVPut: self.on_kv_put,
            p.KVGet: self.on_kv_get,
            p.CreateActor: self.on_create_actor,
            p.SubscribeActor: self.on_subscribe_actor,
            p.ActorStarted: self.on_actor_started,
            p.KillActor: self.on_kill_actor,
            p.ActorExited: self.on_actor_exited,
            p.GetNamedActor: self.on_get_named_actor,
            p.ListNamedActors: self.on_list_named_actors,
            p.OwnerDied: self.on_owner_died,
            p.LeaseGranted: self.on_lease_granted,
            p.LeaseFailed: self.on_lease_failed,
            p.LeaseSpillback: self.on_lease_spillback,
            p.LeaseWorkerDied: self.on_lease_worker_died,
            p.CreatePlacementGroup: self.group_manager.on_create_placement_group,
            p.RemovePlacementGroup: self.group_manager.on_remove_placement_group,
            p.WaitPlacementGroup: self.group_manager.on_wait_placement_group,
            p.GetPlacementGroups: self.group_manager.on_get_placement_groups,
            p.ReserveBundlesReply: self.group_manager.on_reserve_bundles_reply,
            p.ResourceReport: self.on_resource_report,
            p.RegisterClientReply: lambda msg, peer: None,
            # Actor deaths reach us as LeaseWorkerDied; the node's death notices are not ours.
            p.PeerDied: lambda msg, peer: None,
        }
        self.actors = ActorTable()
        self.view = ClusterView(seed=int.from_bytes(os.urandom(4), "big"))
        self.node_addresses: dict[bytes, str] = {}  # alive node id -> address the head sends to
        self._lease_reqs: dict[int, bytes] = {}  # lease request id -> actor id
        self._unplaced: set[bytes] = set()  # actors no node can hold now; tried again when nodes or groups come
        self._node_watches: dict[bytes, Any] = {}  # node id -> stop watching its pid
        self._view_changed: set[bytes] = set()  # nodes whose resources the others have not heard of
        self._view_flush: Any = None
        self._req_ids = iter(range(1, 1 << 62))
        self._commit_scheduled = False
        live = args.get("liveness_fd")
        if live is not None:
            loop.add_reader(live, self._parent_gone)

    def handle(self, msg: Any, peer: Peer) -> None:
        self._handlers[type(msg)](msg, peer)
        if self.tables.dirty and not self._commit_scheduled:
            # Commit before the flush that carries the replies (flush is also call_soon'd, later).
            self._commit_scheduled = True
            self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._commit_scheduled = False
        self.snapshot.commit(self.tables)

    def on_register_node(self, msg: p.RegisterNode, peer: Peer) -> None:
        self.tables.add_node(NodeInfo(msg.node_id, msg.address, msg.resources, msg.pid))
        # The head leases workers for actors from the node, as a client of it.
        address = self.node_addresses[msg.node_id] = local_address(msg.address)
        self.view.add_node(msg.node_id, to_units(msg.resources))
        self.endpoint.send(address, p.RegisterClient(0, b"head", os.getpid(), self.ipc_address, 0))
        # The new node learns every node, the others learn it, before anyone hears it is ready
        # (its RegisterNodeReply): work aimed at it must not find it unknown.
        self.endpoint.send(address, p.ClusterUpdate([self._node_entry(n) for n in self.view.nodes], []))
        joined = p.ClusterUpdate([self._node_entry(msg.node_id)], [])
        for other, other_address in self.node_addresses.items():
            if other != msg.node_id:
                self.endpoint.send(other_address, joined)
        peer.answer(p.RegisterNodeReply(msg.req_id, self.incarnation))
        self._node_watches[msg.node_id] = process.watch_exit(
            self.loop, msg.pid, lambda: self._node_died(msg.node_id, f"its process {msg.pid} exited"))
        self._resources_changed(new_node=True)

    def _node_entry(self, node_id: bytes) -> list:
        n = self.view.nodes[node_id]
        return [node_id, self.node_addresses[node_id], n.total, n.free]

    def _broadcast_view(self, node_id: bytes) -> None:
        """Send changed resources to every other node, coalesced: at most one update per 50 ms."""
        self._view_changed.add(node_id)
        if self._view_flush is None:
            self._view_flush = self.loop.call_later(0.05, self._flush_view)

    def _flush_view(self) -> None:
        self._view_flush = None
        changed, self._view_changed = self._view_changed, set()
        for node_id, address in self.node_addresses.items():
            entries = [self._node_entry(n) for n in changed if n != node_id and n in self.view.nodes]
            if entries:
                self.endpoint.send(address, p.ClusterUpdate(entries, []))

    def on_resource_report(self, msg: p.ResourceReport, peer: Peer) -> None:
        self._node_resources(msg.node_id, msg.total, msg.free)
        self._resources_changed()

    def _node_resources(self, node_id: bytes, total: dict, free: dict) -> None:
        if node_id in self.view.nodes:
            self.view.set_total(node_id, total, free)
            if len(self.node_addresses) > 1:
                self._broadcast_view(node_id)

    def _node_died(self, node_id: bytes, reason: str) -> None:
        """A node is gone: its actors restart elsewhere (or die), the others forget it, and
        every process that may hold leases or objects there hears of it (PeerDied)."""
        address = self.node_addresses.pop(node_id, None)
        self._node_watches.pop(node_id, lambda: None)()
        if address is None:
            return
        logger.warning("node %s died: %s", node_id.hex(), reason)
        self.tables.node_died(node_id)
        self.view.remove_node(node_id)
        self.group_manager.node_died(node_id)
        for rec in list(self.actors.actors.values()):
            if rec.node_id != node_id or rec.state == p.DEAD:
                continue
            if rec.lease_req is not None:
                self._lease_reqs.pop(rec.lease_req, None)
                rec.lease_req = None
            if rec.state == p.ALIVE:
                self._crashed(rec, f"its node {node_id.hex()} died ({reason})")
            else:  # not started yet: place it again (a late ActorStarted from the dead one is ignored)
                self.actors.set_lease(rec, None)
                rec.incarnation += 1
                self._schedule(rec)
        died = p.PeerDied(address, f"node {node_id.hex()} died: {reason}")
        gone = p.ClusterUpdate([], [node_id])
        for other in self.node_addresses.values():
            self.endpoint.send(other, gone)
            self.endpoint.send(other, died)
        for job in self.tables.jobs.values():
            if job.alive:
                self.endpoint.send(job.driver_address, died)

    def _resources_changed(self, new_node: bool = False) -> None:
        """Resources came free or a node joined: place what waits."""
        self.group_manager.place_pending()
        if new_node:
            self.place_waiting_actors()

    def place_waiting_actors(self) -> None:
        """A node joined or a group was created: actors no node could hold may fit now."""
        for aid in list(self._unplaced):
            rec = self.actors.actors.get(aid)
            self._unplaced.discard(aid)
            if rec is not None and rec.state in (p.PENDING_CREATION, p.RESTARTING) and rec.lease_req is None:
                self._schedule(rec)

    def _node_send(self, node_id: bytes | None, msg: Any) -> None:
        address = self.node_addresses.get(node_id) if node_id is not None else None
        if address:
            self.endpoint.send(address, msg)

    # -- actors ----------------------------------------------------------------------------------
    def on_create_actor(self, msg: p.CreateActor, peer: Peer) -> None:
        spec = msg.spec
        name = spec.get("name")
        if name:
            existing = self.actors.named(spec.get("namespace") or "", name)
            if existing is not None:
                if spec.get("get_if_exists"):
                    peer.answer(p.CreateActorReply(msg.req_id, existing.actor_id, existing.info(), None))
                    return
                from asyncray._private.serialization import dumps_exception

                err = ValueError(f"The name {name} (namespace={spec.get('namespace')}) is already taken. Please use "
                                 "a different name or get the existing actor using ray.get_actor('{name}', "
                                 "namespace=...).")
                peer.answer(p.CreateActorReply(msg.req_id, msg.actor_id, None, dumps_exception(err)))
                return
        rec = ActorRecord(msg.actor_id, spec)
        self.actors.add(rec)
        peer.answer(p.CreateActorReply(msg.req_id, msg.actor_id, None, None))
        self._schedule(rec)

    def _schedule(self, rec: ActorRecord) -> None:
        placement = rec.spec.get("placement", {})
        strategy = rec.spec.get("strategy")
        if isinstance(strategy, list):
            strategy = NodeAffinity(strategy[1], strategy[2], strategy[3])
        group = rec.spec.get("placement_group")
        if group is not None and self._group_gone(group[0]):
            self._set_dead(rec, _died_error(rec.actor_id, "cannot start: its placement group was removed.",
                                            rec.spec.get("class_name")))
            return
        decision = self.view.pick(to_units(placement), strategy)
        if decision.unschedulable:
            from asyncray._private.serialization import dumps_exception
            from asyncray.exceptions import ActorUnschedulableError

            self._set_dead(rec, dumps_exception(ActorUnschedulableError(decision.unschedulable)))
            return
        if decision.node_id is None:
            if not self.view.nodes:
                pass  # placed when a node registers
            elif group is None:
                logger.warning("actor %s needs %s, more than any node has: it stays pending until a node that "
                               "fits joins", rec.spec.get("class_name"), placement)
            self._unplaced.add(rec.actor_id)
            return
        # Counted against the node until it reports, so a burst of actors spreads out; the node
        # decides again with its own fresher view and may send the request on (LeaseSpillback).
        self.view.acquire(decision.node_id, to_units(rec.spec.get("shape", {})))
        self._request_actor_lease(rec, decision.node_id, rec.spec.get("strategy"))

    def _request_actor_lease(self, rec: ActorRecord, node_id: bytes, strategy: Any) -> None:
        rid = next(self._req_ids)
        rec.lease_req = rid
        rec.node_id = node_id
        self._lease_reqs[rid] = rec.actor_id
        self._node_send(node_id, p.RequestLease(rid, rec.spec.get("shape", {}), rec.spec.get("job_id", 0),
                                                rec.spec.get("runtime_env"), strategy))

    def on_lease_spillback(self, msg: p.LeaseSpillback, peer: Peer) -> None:
        aid = self._lease_reqs.pop(msg.req_id, None)
        rec = self.actors.actors.get(aid) if aid is not None else None
        if rec is None or rec.state == p.DEAD or msg.node_id not in self.node_addresses:
            if rec is not None and rec.state != p.DEAD:
                rec.lease_req = None
                self._schedule(rec)  # the node it was sent to is gone: decide again
            return
        self._request_actor_lease(rec, msg.node_id, spillback_strategy(rec.spec.get("strategy"), msg.node_id))

    def _group_gone(self, pg_id: bytes) -> bool:
        g = self.tables.groups.groups.get(pg_id)
        return g is None or g.state == REMOVED

    def on_lease_granted(self, msg: p.LeaseGranted, peer: Peer) -> None:
        aid = self._lease_reqs.pop(msg.req_id, None)
        rec = self.actors.actors.get(aid) if aid is not None else None
        if rec is None or rec.state == p.DEAD:
            peer.answer(p.ReturnLease(msg.lease_id, True))
            return
        rec.lease_req = None
        self.actors.set_lease(rec, msg.lease_id)
        rec.address = msg.worker_address
        rec.spec["gpu_ids"] = msg.gpu_ids
        self.endpoint.send(msg.worker_address, p.StartActor(rec.actor_id, rec.incarnation, rec.spec))

    def on_lease_failed(self, msg: p.LeaseFailed, peer: Peer) -> None:
        aid = self._lease_reqs.pop(msg.req_id, None)
        rec = self.actors.actors.get(aid) if aid is not None else None
        if rec is not None:
            from asyncray._private.serialization import deserialize_exception, dumps_exception
            from asyncray.exceptions import ActorUnschedulableError, TaskPlacementGroupRemoved, TaskUnschedulableError

            err = deserialize_exception(msg.error)
            if isinstance(err, TaskUnschedulableError):
                self._set_dead(rec, dumps_exception(ActorUnschedulableError(err.error_message)))
            elif isinstance(err, TaskPlacementGroupRemoved):
                self._set_dead(rec, _died_error(rec.actor_id, "cannot start: its placement group was removed.",
                                                rec.spec.get("class_name")))
            else:
                self._set_dead(rec, msg.error)

    def on_actor_started(self, msg: p.ActorStarted, peer: Peer) -> None:
        rec = self.actors.actors.get(msg.actor_id)
        if rec is None or rec.incarnation != msg.incarnation or rec.state == p.DEAD:
            return
        if msg.error is not None:
            # A constructor that raises: dead for good, every call raises ActorDiedError with it.
            from asyncray._private.serialization import deserialize_exception, dumps_exception
            from asyncray.exceptions import ActorDiedError

            lease = rec.lease_id
            self._set_dead(rec, dumps_exception(ActorDiedError(deserialize_exception(msg.error))))
            if lease is not None:
                self._node_send(rec.node_id, p.ReturnLease(lease, True))
            return
        self.actors.alive(rec, rec.address)
        self._publish(rec)

    def on_lease_worker_died(self, msg: p.LeaseWorkerDied, peer: Peer) -> None:
        aid = self.actors.by_lease.get(msg.lease_id)
        rec = self.actors.actors.get(aid) if aid is not None else None
        if rec is None or rec.state == p.DEAD:
            return
        self._crashed(rec, f"The actor's worker process died: {msg.reason}.")

    def _crashed(self, rec: ActorRecord, why: str) -> None:
        if rec.can_restart():
            self.actors.restarting(rec)
            self._publish(rec)
            self._schedule(rec)
        else:
            restarts = f" after {rec.num_restarts} restart(s)" if rec.num_restarts else ""
            self._set_dead(rec, _died_error(rec.actor_id, f"died{restarts}: {why}", rec.spec.get("class_name")))

    def _set_dead(self, rec: ActorRecord, error: bytes | None) -> None:
        self.actors.dead(rec, error)
        self._publish(rec)
        self.group_manager.creator_actor_gone(rec.actor_id)  # groups it made may go with it

    def on_kill_actor(self, msg: p.KillActor, peer: Peer) -> None:
        rec = self.actors.actors.get(msg.actor_id)
        if rec is None or rec.state == p.DEAD:
            return
        lease = rec.lease_id
        if msg.no_restart or not rec.can_restart():
            self._set_dead(rec, _died_error(rec.actor_id, "was killed by ray.kill().", rec.spec.get("class_name")))
        else:
            self._crashed(rec, "it was killed by ray.kill(no_restart=False)")
        if lease is not None:
            self._node_send(rec.node_id, p.ReturnLease(lease, True))
        elif rec.lease_req is not None and rec.state == p.DEAD:
            self._lease_reqs.pop(rec.lease_req, None)
            self._node_send(rec.node_id, p.CancelLeaseRequest(rec.lease_req))
        self._unplaced.discard(rec.actor_id)

    def on_actor_exited(self, msg: p.ActorExited, peer: Peer) -> None:
        rec = self.actors.actors.get(msg.actor_id)
        if rec is None or rec.state == p.DEAD:
            return
        self._set_dead(rec, _died_error(rec.actor_id, "exited: it called exit_actor().", rec.spec.get("class_name")))

    def on_owner_died(self, msg: p.OwnerDied, peer: Peer) -> None:
        for rec in self.actors.owned_by(msg.address):
            self.on_kill_actor(p.KillActor(rec.actor_id, True), peer)
        for job in self.tables.jobs.values():  # a driver died: its job's groups go with it
            if job.alive and job.driver_address == msg.address:
                self.group_manager.job_gone(job.job_id)

    def group_removed(self, pg_id: bytes) -> None:
        """The group manager removed a group: its actors are dead for good (ActorDiedError),
        before the nodes kill their workers."""
        for actor in list(self.actors.actors.values()):
            group = actor.spec.get("placement_group")
            if group is not None and group[0] == pg_id and actor.state != p.DEAD:
                self._set_dead(actor, _died_error(actor.actor_id, "died: its placement group was removed.",
                                                  actor.spec.get("class_name")))
                self._unplaced.discard(actor.actor_id)
                if actor.lease_req is not None:
                    self._lease_reqs.pop(actor.lease_req, None)

    def on_subscribe_actor(self, msg: p.SubscribeActor, peer: Peer) -> None:
        rec = self.actors.actors.get(msg.actor_id)
        if rec is None:
            peer.answer(p.ActorUpdate(msg.actor_id, p.DEAD, "", 0,
                                      _died_error(msg.actor_id, "is unknown to this cluster.")))
            return
        rec.subscribers.add(peer.identity)
        peer.answer(self._update(rec))

    def _update(self, rec: ActorRecord) -> p.ActorUpdate:
        return p.ActorUpdate(rec.actor_id, rec.state, rec.address if rec.state == p.ALIVE else "", rec.incarnation,
                             rec.error)

    def _publish(self, rec: ActorRecord) -> None:
        update = self._update(rec)
        for identity in rec.subscribers:
            self.endpoint.reply(identity, update)

    def on_get_named_actor(self, msg: p.GetNamedActor, peer: Peer) -> None:
        rec = self.actors.named(msg.namespace, msg.name)
        peer.answer(p.NamedActorReply(msg.req_id, rec.info() if rec is not None else None))

    def on_list_named_actors(self, msg: p.ListNamedActors, peer: Peer) -> None:
        peer.answer(p.ListNamedActorsReply(msg.req_id, self.actors.list_named(msg.namespace)))

    def on_register_job(self, msg: p.RegisterJob, peer: Peer) -> None:
        job = self.tables.add_job(msg.namespace, msg.driver_address, msg.pid)
        peer.answer(p.RegisterJobReply(msg.req_id, job.job_id, job.namespace, self.tables.node_list()))

    def on_job_finished(self, msg: p.JobFinished, peer: Peer) -> None:
        self.tables.finish_job(msg.job_id)
        self.group_manager.job_gone(msg.job_id)

    def on_get_nodes(self, msg: p.GetNodes, peer: Peer) -> None:
        peer.answer(p.NodesReply(msg.req_id, self.tables.node_list()))

    def on_kv_put(self, msg: p.KVPut, peer: Peer) -> None:
        peer.answer(p.KVReply(msg.req_id, self.tables.kv_put(msg.namespace, msg.key, msg.value, msg.overwrite)))

    def on_kv_get(self, msg: p.KVGet, peer: Peer) -> None:
        peer.answer(p.KVReply(msg.req_id, self.tables.kv_get(msg.namespace, msg.key)))

    def _parent_gone(self) -> None:
        self.loop.remove_reader(self.args["liveness_fd"])
        self.stopped.set()


def _died_error(actor_id: bytes, what: str, class_name: str | None = None) -> bytes:
    """A pickled ActorDiedError: "The actor <class> (<id>) <what>". Imported late: the head
    starts without cloudpickle on the path of init()."""
    from asyncray._private.serialization import dumps_exception
    from asyncray.exceptions import ActorDiedError

    who = f"{class_name} ({actor_id.hex()})" if class_name else actor_id.hex()
    return dumps_exception(ActorDiedError(f"The actor {who} {what}"))


async def amain(args: dict) -> None:
    loop = asyncio.get_running_loop()
    head = HeadServer(args, loop)
    import signal

    loop.add_signal_handler(signal.SIGTERM, head.stopped.set)
    process.report_ready(args, {"ipc": head.ipc_address, "tcp": head.tcp_address, "pid": os.getpid()})
    await head.stopped.wait()
    head.snapshot.commit(head.tables)
    head.snapshot.close()
    head.endpoint.close()


def main() -> None:
    args = json.loads(sys.argv[1])
    if args.get("liveness_fd") is not None:
        process.set_parent_death_signal(args["parent_pid"])
    logging.basicConfig(level=args.get("logging_level", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = process.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(amain(args))


if __name__ == "__main__":
    main()
