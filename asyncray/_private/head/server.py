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
from asyncray._private.head.snapshot import Snapshot
from asyncray._private.head.tables import NodeInfo, Tables
from asyncray._private.transport.sockets import Endpoint, Peer

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
            p.LeaseWorkerDied: self.on_lease_worker_died,
            p.RegisterClientReply: lambda msg, peer: None,
            # Actor deaths reach us as LeaseWorkerDied; the node's death notices are not ours.
            p.PeerDied: lambda msg, peer: None,
        }
        self.actors = ActorTable()
        self._lease_reqs: dict[int, bytes] = {}  # lease request id -> actor id
        self._req_ids = iter(range(1, 1 << 62))
        self.node_address = ""  # the node actors are placed on (one node until the cluster issue)
        self.node_resources: dict = {}
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
        peer.answer(p.RegisterNodeReply(msg.req_id, self.incarnation))
        # The head leases workers for actors from the node, as a client of it.
        tcp, _, ipc = msg.address.partition("|")
        self.node_address = ipc or tcp
        self.node_resources = msg.resources
        self.endpoint.send(self.node_address, p.RegisterClient(0, b"head", os.getpid(), self.ipc_address, 0))
        for rec in self.actors.actors.values():
            if rec.state in (p.PENDING_CREATION, p.RESTARTING) and rec.lease_req is None:
                self._schedule(rec)

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
        if not self.node_address:
            return  # placed when a node registers
        placement = rec.spec.get("placement", {})
        missing = {k: v for k, v in placement.items() if self.node_resources.get(k, 0) < v}
        if missing:
            logger.warning("actor %s needs %s, more than any node has (%s): it stays pending until a node that "
                           "fits joins", rec.spec.get("class_name"), placement, self.node_resources)
        rid = next(self._req_ids)
        rec.lease_req = rid
        self._lease_reqs[rid] = rec.actor_id
        self.endpoint.send(self.node_address, p.RequestLease(rid, rec.spec.get("shape", {}), rec.spec.get("job_id", 0),
                                                            rec.spec.get("runtime_env")))

    def on_lease_granted(self, msg: p.LeaseGranted, peer: Peer) -> None:
        aid = self._lease_reqs.pop(msg.req_id, None)
        rec = self.actors.actors.get(aid) if aid is not None else None
        if rec is None or rec.state == p.DEAD:
            self.endpoint.send(self.node_address, p.ReturnLease(msg.lease_id, True))
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
                self.endpoint.send(self.node_address, p.ReturnLease(lease, True))
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
            self.endpoint.send(self.node_address, p.ReturnLease(lease, True))
        elif rec.lease_req is not None and rec.state == p.DEAD:
            self._lease_reqs.pop(rec.lease_req, None)
            self.endpoint.send(self.node_address, p.CancelLeaseRequest(rec.lease_req))

    def on_actor_exited(self, msg: p.ActorExited, peer: Peer) -> None:
        rec = self.actors.actors.get(msg.actor_id)
        if rec is None or rec.state == p.DEAD:
            return
        self._set_dead(rec, _died_error(rec.actor_id, "exited: it called exit_actor().", rec.spec.get("class_name")))

    def on_owner_died(self, msg: p.OwnerDied, peer: Peer) -> None:
        for rec in self.actors.owned_by(msg.address):
            self.on_kill_actor(p.KillActor(rec.actor_id, True), peer)

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
