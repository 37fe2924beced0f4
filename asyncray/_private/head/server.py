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
        }
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
