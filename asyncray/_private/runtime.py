"""Runtime: one per process, replaced whole by init()/shutdown().

It owns the runtime thread (an event loop that never runs user code), the process's Endpoint
and CoreClient, and, in a driver that started a local cluster, the head and node manager
processes. Workers build one at fork time (see worker/main.py).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import shutil
import sys
import threading
from typing import Any, Callable

from asyncray._private import launcher, process, protocol as p
from asyncray._private.config import Config
from asyncray._private.core.client import CoreClient
from asyncray._private.ids import random_id
from asyncray._private.object_store import segments
from asyncray._private.transport.sockets import Endpoint, Peer, local_address

logger = logging.getLogger(__name__)

_current: "Runtime | None" = None
_current_lock = threading.RLock()


def current() -> "Runtime | None":
    return _current


def set_current(rt: "Runtime | None") -> None:
    global _current
    _current = rt


def current_client() -> CoreClient:
    rt = _current
    if rt is None:
        from asyncray._private.api import auto_init

        rt = auto_init()
    return rt.client


class LoopThread:
    """The runtime thread: an event loop (uvloop where installed) serving this process's sockets."""

    def __init__(self, name: str) -> None:
        self.loop = process.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        process.keep_signals_off_this_thread()
        self.loop._asyncray_thread = threading.current_thread()  # type: ignore[attr-defined]
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = 30) -> Any:
        """Run fn(*args) in the loop thread and return its result (from any other thread)."""
        import concurrent.futures

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

        # An empty context: whatever the loop thread registers while running fn (socket readers,
        # timers) must not carry the caller's context vars, e.g. ipykernel's current cell.
        self.loop.call_soon_threadsafe(run, context=contextvars.Context())
        return fut.result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Runtime:
    def __init__(self, *, config: Config, session: str, session_dir: str, identity: bytes, kind: str) -> None:
        self.config = config
        self.session = session
        self.session_dir = session_dir
        self.identity = identity
        self.kind = kind  # "driver" or "worker"
        self.loop_thread = LoopThread(f"asyncray-{kind}")
        self.loop = self.loop_thread.loop
        self.children: list[process.Child] = []
        self.liveness_w: int | None = None
        self.head_address = ""
        self.node_address = ""
        self.node_id = b""
        self.job_id = 0
        self.namespace = ""
        self.resources: dict[str, float] = {}
        self.endpoint: Endpoint = None  # type: ignore[assignment]
        self.client: CoreClient = None  # type: ignore[assignment]
        self.log_to_driver = True
        self.owns_cluster = False
        self.blas_user_set = False  # workers: the user set OMP_NUM_THREADS & co. themselves
        self.stopping = False
        self.executor: Any = None  # workers: the task executor

    # -- wiring ----------------------------------------------------------------------------
    def open_endpoint(self, address: str) -> str:
        def make() -> str:
            self.endpoint = Endpoint(self.loop, self.identity, self._handle)
            return self.endpoint.bind(address)

        return self.loop_thread.call(make)

    def make_client(self, *, node_address: str, job_id: int, address: str, driver_address: str,
                    worker_id: bytes | None) -> None:
        self.client = CoreClient(self.loop, self.endpoint, config=self.config, session=self.session,
                                 node_address=node_address, job_id=job_id, address=address,
                                 driver_address=driver_address, worker_id=worker_id)
        c = self.client
        self._handlers: dict[type, Callable[[Any, Peer], None]] = {
            p.TaskReply: c.submitter.on_task_reply,
            p.LeaseWorkerDied: c.submitter.on_lease_worker_died,
            p.GetObject: c.on_get_object,
            p.LogLines: self._on_log_lines,
            p.GetJobInfo: self._on_get_job_info,
            p.GeneratorItem: c.submitter.on_generator_item,
            p.AddBorrower: c.on_add_borrower,
            p.RemoveBorrower: c.on_remove_borrower,
            p.PeerDied: c.on_peer_died,
            p.ActorUpdate: c.actor_submitter.on_update,
            p.TaskNotRun: c.submitter.on_task_not_run,
            p.LeaseInfeasible: c.submitter.on_lease_infeasible,
        }
        for reply in (p.LeaseGranted, p.LeaseFailed, p.CreateObjectReply, p.ObjectReply, p.RegisterJobReply,
                      p.RegisterClientReply, p.NodesReply, p.ResourcesReply, p.KVReply, p.ShutdownNodeReply,
                      p.JobInfoReply, p.AddBorrowerReply, p.UnregisterClientReply, p.RestoreObjectReply,
                      p.CreateActorReply, p.NamedActorReply, p.ListNamedActorsReply, p.PlacementGroupReply,
                      p.PlacementGroupsReply, p.LeaseSpillback):
            self._handlers[reply] = c.on_reply
        c.head_address = self.head_address

    def add_handler(self, kind: type, fn: Callable[[Any, Peer], None]) -> None:
        self._handlers[kind] = fn

    def _handle(self, msg: Any, peer: Peer) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise RuntimeError(f"asyncray bug: no handler for {type(msg).__name__} in this {self.kind}; "
                               "please report it")
        handler(msg, peer)

    def _on_get_job_info(self, msg: p.GetJobInfo, peer: Peer) -> None:
        path = [os.path.abspath(x) for x in sys.path if x and os.path.isdir(x)]
        if not sys.path or sys.path[0] == "":
            path.insert(0, os.getcwd())
        peer.answer(p.JobInfoReply(msg.req_id, self.namespace, path))

    def _on_log_lines(self, msg: p.LogLines, peer: Peer) -> None:
        if not self.log_to_driver:
            return
        prefix = f"({msg.name} pid={msg.pid}) "
        out = sys.stdout
        try:
            out.write("".join(prefix + line + "\n" for line in msg.lines))
            out.flush()
        except Exception:
            pass

    # -- driver start-up -------------------------------------------------------------------
    @classmethod
    def start_driver(cls, *, config: Config, address: str | None, num_cpus: float | None, num_gpus: float | None,
                     resources: dict | None, object_store_memory: int | None, namespace: str | None,
                     logging_level: Any, log_to_driver: bool) -> "Runtime":
        # The driver's pid first: tests and clean-up tools can tell whose segments they see.
        session = f"{os.getpid():x}_{os.urandom(3).hex()}"
        os.makedirs(config.temp_dir, exist_ok=True)
        # A joining driver gets a directory of its own for its socket; the cluster's stays the cluster's.
        session_dir = os.path.join(config.temp_dir, f"{'s' if address is None else 'd'}-{session}")
        rt = cls(config=config, session=session, session_dir=session_dir, identity=random_id(), kind="driver")
        rt.log_to_driver = log_to_driver
        try:
            if address is None:
                rt._start_local_cluster(num_cpus, num_gpus, resources, object_store_memory, logging_level)
            else:
                rt._locate_cluster(address)
            rt._connect_driver(namespace)
        except BaseException:
            rt.shutdown()
            raise
        return rt

    def _start_local_cluster(self, num_cpus, num_gpus, resources, object_store_memory, logging_level) -> None:
        total, store = launcher.node_resources(num_cpus, num_gpus, resources, object_store_memory, head=True)
        live_r, self.liveness_w = process.liveness_pipe()
        common = launcher.common_args(self.session, self.session_dir, live_r, self.config.to_dict(), logging_level)
        self.head_address = f"ipc://{self.session_dir}/head.sock"

        def spawn_both() -> None:
            # From the runtime thread: PR_SET_PDEATHSIG fires when the forking thread exits.
            self.children.append(launcher.spawn_head(common))
            self.children.append(launcher.spawn_node(common, total, store, self.head_address))

        self.loop_thread.call(spawn_both)
        os.close(live_r)
        self.loop_thread.call(self._watch_children)
        self.owns_cluster = True
        head_info = self.children[0].wait_ready(self.config.startup_timeout_s)
        node_info = self.children[1].wait_ready(self.config.startup_timeout_s)
        self.head_address = head_info["ipc"]
        self.head_tcp = head_info["tcp"]
        self.node_address = node_info["ipc"]
        self.resources = total

    def _watch_children(self) -> None:
        """Loop thread: learn at once when a process we started dies (a pidfd per child)."""
        for child in self.children:
            process.watch_exit(self.loop, child.pid, lambda child=child: self._child_exited(child))

    def _child_exited(self, child: process.Child) -> None:
        if self.stopping:
            return
        code = child.popen.poll()
        reason = f"{child.role} (pid {child.pid}) exited with {code}; see {child.log_path}"
        logger.error("asyncray %s", reason)
        if child.role == "node manager" and self.client is not None:
            self.client.node_died(reason)

    def _locate_cluster(self, address: str) -> None:
        """Join a running cluster through its head's tcp address ("host:port")."""
        os.makedirs(self.session_dir, exist_ok=True)
        self.head_address = address if "://" in address else f"tcp://{address}"
        self.owns_cluster = False

    def _connect_driver(self, namespace: str | None) -> None:
        my_address = self.open_endpoint(f"ipc://{self.session_dir}/driver-{self.identity.hex()[:12]}.sock")
        self.make_client(node_address=self.node_address, job_id=0, address=my_address, driver_address=my_address,
                         worker_id=None)
        c = self.client
        try:
            reply = c.call(self.head_address, lambda rid: p.RegisterJob(rid, my_address, namespace, os.getpid()),
                           timeout=self.config.connect_timeout_s)
        except TimeoutError:
            raise ConnectionError(
                f"No asyncray head answered at {self.head_address} within {self.config.connect_timeout_s:.0f} s. "
                "Check the address (init() returns it as address_info['address']) and that the cluster is "
                "running.") from None
        if not self.node_address:
            self.node_address = self._pick_node(reply.nodes)
            c.node_address = self.node_address
        self.job_id = reply.job_id
        self.namespace = reply.namespace
        c.set_job(reply.job_id)
        node = c.call(self.node_address, lambda rid: p.RegisterClient(rid, self.identity, os.getpid(), my_address,
                                                                        reply.job_id),
                      timeout=self.config.startup_timeout_s)
        self.node_id = c.node_id = node.node_id
        self.loop_thread.call(c.learn_nodes, reply.nodes)

    @staticmethod
    def _pick_node(nodes: list) -> str:
        """The node on this machine (its ipc socket is visible here), else the first alive one."""
        alive = [n for n in nodes if n[3]]
        if not alive:
            raise ConnectionError("The asyncray cluster has no live node to run work on.")
        for _node_id, address, _resources, _alive in alive:
            reachable = local_address(address)
            if reachable.startswith("ipc://"):
                return reachable
        return alive[0][1].partition("|")[0]

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.stopping = True
        client = self.client
        if client is not None:
            client.close()
            if self.owns_cluster and self.node_address and client.node_dead is None:
                try:
                    client.call(self.node_address, lambda rid: p.ShutdownNode(rid), timeout=3)
                except Exception:
                    pass
            elif self.head_address and self.job_id:
                # Leaving a cluster we joined: our leases and stored objects go with us.
                try:
                    self.loop_thread.call(self.endpoint.send, self.head_address, p.JobFinished(self.job_id))
                    for node in [self.node_address, *client.registered_nodes]:
                        if node:
                            client.call(node, lambda rid: p.UnregisterClient(rid), timeout=3)
                except Exception:
                    pass
        if self.liveness_w is not None:
            os.close(self.liveness_w)  # every child we started sees EOF and stops
            self.liveness_w = None
        for child in self.children:
            child.stop(self.config.stop_grace_s)
        if self.endpoint is not None:
            try:
                self.loop_thread.call(self.endpoint.close, timeout=5)
            except Exception:
                pass
        self.loop_thread.stop()
        if self.owns_cluster:
            segments.unlink_session(self.session)
        if self.kind == "driver" and self.session_dir:
            shutil.rmtree(self.session_dir, ignore_errors=True)
