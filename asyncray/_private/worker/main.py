"""A worker process, forked from the template: runs tasks in its main thread.

The runtime thread serves sockets; the main thread takes PushTask messages from a queue and
runs them one at a time, in arrival order. Output from print() goes to the worker's log file
and, line by line, to the driver of the task's job with Ray's "(name pid=N)" prefix.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Any

from asyncray._private import process, protocol as p, runtime as runtime_mod
from asyncray._private.config import Config
from asyncray._private.worker.executor import Executor


def run(template_args: dict, cmd: dict) -> None:
    worker_id = bytes.fromhex(cmd["worker_id"])
    log_dir = template_args["log_dir"]
    log_fd = os.open(os.path.join(log_dir, f"worker-{cmd['worker_id'][:12]}-{os.getpid()}.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    process.set_parent_death_signal(os.getppid())
    _apply_runtime_env(cmd.get("runtime_env"))
    config = Config(**template_args["config"])
    rt = runtime_mod.Runtime(config=config, session=cmd["session"], session_dir=template_args["session_dir"],
                             identity=worker_id, kind="worker")
    rt.blas_user_set = template_args.get("blas_user_set", False)
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    address = rt.open_endpoint(f"ipc://{template_args['session_dir']}/w-{cmd['worker_id'][:16]}.sock")
    rt.node_address = cmd["node_address"]
    rt.head_address = cmd.get("head_address", "")
    rt.node_id = bytes.fromhex(cmd["node_id"])
    rt.make_client(node_address=rt.node_address, job_id=cmd.get("job_id") or 0, address=address,
                   driver_address="", worker_id=worker_id)
    executor = Executor(rt, tasks)
    rt.executor = executor
    client = rt.client
    client.node_id = rt.node_id

    def on_block() -> None:
        if threading.current_thread() is threading.main_thread():
            executor.set_blocked(True)
        rt.loop.call_soon_threadsafe(rt.endpoint.send, rt.node_address, p.WorkerBlocked(worker_id))

    def on_unblock() -> None:
        if threading.current_thread() is threading.main_thread():
            executor.set_blocked(False)
        rt.loop.call_soon_threadsafe(rt.endpoint.send, rt.node_address, p.WorkerUnblocked(worker_id))

    client.on_block = on_block
    client.on_unblock = on_unblock
    # Every handler is in place before the node learns we exist: a message that found no
    # handler would be lost.
    rt.add_handler(p.PushTask, executor.on_push)
    rt.add_handler(p.CancelTask, executor.on_cancel)
    rt.add_handler(p.ReapIfIdle, lambda msg, peer: peer.answer(p.ReapReply(worker_id, client.owns_objects())))
    rt.add_handler(p.StartActor, lambda msg, peer: tasks.put((msg, peer)))
    rt.add_handler(p.PushActorTask, executor.on_actor_call)
    rt.loop.call_soon_threadsafe(rt.loop.add_reader, template_args["liveness_fd"], os._exit, 1)
    runtime_mod.set_current(rt)
    sys.stdout = executor.stdout
    sys.stderr = executor.stderr
    rt.loop_thread.call(rt.endpoint.send, rt.node_address, p.RegisterWorker(worker_id, os.getpid(), address))
    executor.serve(tasks)


def _apply_runtime_env(env: Any) -> None:
    if not env:
        return
    for k, v in (env.get("env_vars") or {}).items():
        os.environ[k] = v
    wd = env.get("working_dir")
    if wd:
        os.chdir(wd)
        sys.path.insert(0, wd)
