"""The public functions, checked here and carried out by the current Runtime.

Argument errors name what was wrong and what to do, with Ray's exception types.
"""
from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import threading
from typing import Any, Sequence

from asyncray._private import options as opts, runtime as runtime_mod
from asyncray._private.config import Config
from asyncray._private.transport.sockets import local_address

_init_lock = threading.RLock()
_job_runtime_env: dict | None = None
_atexit_registered = False

_INIT_KEYWORDS = {
    "address", "num_cpus", "num_gpus", "resources", "object_store_memory", "namespace", "ignore_reinit_error",
    "logging_level", "log_to_driver", "runtime_env", "include_dashboard", "configure_logging", "logging_format",
    "_temp_dir", "_system_config",
}


class InitContext:
    """What init() returns: usable as `with ray.init(): ...` (shuts down on exit)."""

    def __init__(self, rt: Any) -> None:
        head = getattr(rt, "head_tcp", "") or rt.head_address
        self.address_info = {"address": head.replace("tcp://", ""), "node_id": rt.node_id.hex(),
                             "session_dir": rt.session_dir}
        self.dashboard_url = None

    def __enter__(self) -> "InitContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def disconnect(self) -> None:
        shutdown()


def init(address: str | None = None, **kwargs: Any) -> InitContext:
    unknown = set(kwargs) - _INIT_KEYWORDS
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s) {sorted(unknown)}; "
                        f"valid ones are {sorted(_INIT_KEYWORDS)}.")
    global _job_runtime_env, _atexit_registered
    with _init_lock:
        rt = runtime_mod.current()
        if rt is not None:
            if kwargs.get("ignore_reinit_error"):
                logging.getLogger("asyncray").info("Calling ray.init() again after it has already been called.")
                return InitContext(rt)
            raise RuntimeError("Maybe you called ray.init twice by accident? This error can be suppressed by "
                               "passing in 'ignore_reinit_error=True' or by calling 'ray.shutdown()' prior to "
                               "'ray.init()'.")
        num_cpus = kwargs.get("num_cpus")
        if num_cpus is not None and (not isinstance(num_cpus, (int, float)) or num_cpus < 0):
            raise ValueError(f"num_cpus must be a non-negative number, got {num_cpus!r}.")
        resources = kwargs.get("resources")
        if resources is not None:
            if not isinstance(resources, dict):
                raise TypeError(f"resources must be a dict, got {type(resources).__name__}.")
            for k in ("CPU", "GPU"):
                if k in resources:
                    raise ValueError(f"Use the 'num_{k.lower()}s' argument to init() instead of resources['{k}'].")
        env = opts.validate_runtime_env(kwargs.get("runtime_env"))
        address = _resolve_address(address)
        if address is not None:
            for key in ("num_cpus", "num_gpus", "resources", "object_store_memory"):
                if kwargs.get(key) is not None:
                    raise ValueError(f"When connecting to an existing cluster, {key} must not be provided: the "
                                     f"cluster's nodes declare their resources when they start.")
        config = Config.from_env(**({"temp_dir": kwargs["_temp_dir"]} if kwargs.get("_temp_dir") else {}))
        rt = runtime_mod.Runtime.start_driver(
            config=config, address=address, num_cpus=num_cpus, num_gpus=kwargs.get("num_gpus"), resources=resources,
            object_store_memory=kwargs.get("object_store_memory"), namespace=kwargs.get("namespace"),
            logging_level=kwargs.get("logging_level", logging.INFO), log_to_driver=kwargs.get("log_to_driver", True))
        _job_runtime_env = env
        runtime_mod.set_current(rt)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return InitContext(rt)


def _resolve_address(address: str | None) -> str | None:
    """Ray's order: "local" starts a cluster; None joins ASYNCRAY_ADDRESS if set, else starts one;
    "auto" needs a running cluster named by ASYNCRAY_ADDRESS; anything else is a head address."""
    import os

    if address == "local":
        return None
    env = os.environ.get("ASYNCRAY_ADDRESS") or None
    if address is None:
        return env
    if address == "auto":
        if env is None:
            raise ConnectionError("address='auto' needs a running asyncray cluster, and none was found: set "
                                  "ASYNCRAY_ADDRESS to its head's address, or call init() without an address to "
                                  "start a local cluster.")
        return env
    if not isinstance(address, str):
        raise TypeError(f"address must be a string like 'host:port', got {type(address).__name__}.")
    return address


def auto_init() -> Any:
    """The first .remote() (or get/put) without init() starts a local cluster, as in Ray."""
    with _init_lock:
        rt = runtime_mod.current()
        if rt is None:
            init()
            rt = runtime_mod.current()
        return rt


def job_runtime_env() -> dict | None:
    return _job_runtime_env


def is_initialized() -> bool:
    return runtime_mod.current() is not None


def shutdown() -> None:
    global _job_runtime_env
    with _init_lock:
        rt = runtime_mod.current()
        if rt is None or rt.kind != "driver":
            return
        runtime_mod.set_current(None)
        _job_runtime_env = None
        rt.shutdown()


def _client() -> Any:
    return runtime_mod.current_client()


def _check_refs(refs: Any, fn: str) -> tuple[list, bool]:
    from asyncray.object_ref import ObjectRef

    if isinstance(refs, ObjectRef):
        return [refs], True
    if isinstance(refs, (list, tuple)):
        for i, r in enumerate(refs):
            if not isinstance(r, ObjectRef):
                raise TypeError(f"{fn}() expected a list of ObjectRefs, but item {i} is a {type(r).__name__}: {r!r}.")
        return list(refs), False
    raise ValueError(f"Invalid type of object refs, {type(refs)}, is given. 'object_refs' must either be an "
                     f"ObjectRef or a list of ObjectRefs.")


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"'timeout' must be a non-negative number or None, got {timeout!r}.")


_warned_blocking_get = False


def _warn_if_blocking_a_loop() -> None:
    """A blocking get inside an async actor works (the runtime has its own thread) but stalls
    every other call on the actor's loop: say so once, as Ray does."""
    global _warned_blocking_get
    if _warned_blocking_get:
        return
    from asyncray._private.worker.executor import context

    actor = context.actor
    if actor is None or not actor.is_async:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    _warned_blocking_get = True
    import warnings

    warnings.warn("Using blocking ray.get inside an async actor method blocks its event loop: every other "
                  "call waits. Use `await ref` (or `await asyncray.get_async(refs)`) instead.", stacklevel=3)


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    refs, single = _check_refs(object_refs, "get")
    _check_timeout(timeout)
    _warn_if_blocking_a_loop()
    values = _client().get(refs, timeout)
    return values[0] if single else values


async def get_async(object_refs: Any, *, timeout: float | None = None) -> Any:
    """Awaitable get: never blocks the caller's event loop."""
    refs, single = _check_refs(object_refs, "get_async")
    _check_timeout(timeout)
    return await _client().get_async(refs, timeout, single=single)


def put(value: Any) -> Any:
    from asyncray.object_ref import ObjectRef

    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ray.ObjectRef is not allowed. If you really want to do this, you can "
                        "wrap the ray.ObjectRef in a list and call 'put' on it.")
    return _client().put(value)


def _check_wait(object_refs: Any, num_returns: int, timeout: Any) -> list:
    from asyncray.object_ref import ObjectRef

    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ray.ObjectRef, got {type(object_refs).__name__}.")
    if not object_refs:
        return []  # Ray returns ([], []) for an empty list, whatever num_returns says
    for i, r in enumerate(object_refs):
        if not isinstance(r, ObjectRef):
            raise TypeError(f"wait() expected a list of ray.ObjectRef, got a {type(r).__name__} at index {i}.")
    if not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns!r}: it must be a positive integer.")
    if num_returns > len(object_refs):
        raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number of objects provided to "
                         f"ray.wait ({len(object_refs)}).")
    if len(set(r.binary() for r in object_refs)) != len(object_refs):
        raise ValueError("Wait requires a list of unique object refs.")
    _check_timeout(timeout)
    return list(object_refs)


def wait(object_refs: Sequence[Any], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list, list]:
    refs = _check_wait(object_refs, num_returns, timeout)
    if not refs:
        return [], []
    return _client().wait(refs, num_returns, timeout, fetch_local)


async def wait_async(object_refs: Sequence[Any], *, num_returns: int = 1,
                     timeout: float | None = None) -> tuple[list, list]:
    """Awaitable wait: never blocks the caller's event loop."""
    refs = _check_wait(object_refs, num_returns, timeout)
    if not refs:
        return [], []
    return await _client().wait_async(refs, num_returns, timeout)


def cancel(object_ref: Any, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that produces `object_ref`: a pending task never runs; a running one is
    interrupted (KeyboardInterrupt in its thread) or, with force=True, its worker is killed.
    `get` of the ref then raises TaskCancelledError. Cancelling a finished task does nothing."""
    from asyncray.object_ref import ObjectRef, ObjectRefGenerator

    if isinstance(object_ref, ObjectRefGenerator):
        client = _client()
        client.submitter.cancel_generator(object_ref._task_id, force, recursive)
        return
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"ray.cancel() only supports canceling a task by its ObjectRef, got "
                        f"{type(object_ref).__name__}: {object_ref!r}.")
    client = _client()
    if force and object_ref.task_id() in client.actor_submitter.call_ids:
        raise ValueError("force=True is not supported for actor tasks: cancelling would kill the actor. Use "
                         "ray.cancel(ref) to interrupt the call, or ray.kill(actor) to end the actor.")
    client.submitter.cancel(object_ref, force, recursive)


def job_namespace() -> str:
    rt = runtime_mod.current()
    return rt.namespace if rt is not None else ""


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor: calls then raise ActorDiedError (with no_restart=False a restartable
    actor restarts instead). Its name is free again at once."""
    from asyncray._private import protocol as p
    from asyncray.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). Got: {type(actor)}.")
    client = _client()
    if no_restart:
        client.endpoint.call_threadsafe(client.actor_submitter.killed, actor._actor_id, actor._class_name)
    client.endpoint.call_threadsafe(client._request_head, p.KillActor(actor._actor_id, bool(no_restart)))


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the named actor; ValueError if there is none (in that namespace)."""
    from asyncray._private import protocol as p
    from asyncray.actor import ActorHandle

    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be a string, got {type(namespace).__name__}.")
    client = _client()
    ns = namespace if namespace is not None else job_namespace()
    reply = client.call(client.head_address, lambda rid: p.GetNamedActor(rid, name, ns), timeout=60)
    if reply.info is None:
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. You are trying to look "
                         f"up a named actor you didn't create. 2. The named actor died. 3. You did not use a "
                         f"namespace matching the namespace of the actor (namespace={ns!r}).")
    return ActorHandle._from_info(reply.info, client)


def list_named_actors(all_namespaces: bool = False) -> list:
    from asyncray._private import protocol as p

    client = _client()
    ns = None if all_namespaces else job_namespace()
    reply = client.call(client.head_address, lambda rid: p.ListNamedActors(rid, ns), timeout=60)
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for name, namespace in reply.actors]
    return [name for name, _ns in reply.actors]


def _resources(kind: str) -> dict[str, float]:
    from asyncray._private import protocol as p

    rt = runtime_mod.current()
    if rt is None:
        raise RuntimeError("asyncray is not initialized: call ray.init() first.")
    client = rt.client
    nodes = client.call(client.head_address, lambda rid: p.GetNodes(rid), timeout=30).nodes
    addresses = [local_address(a) for _node_id, a, _res, alive in nodes if alive] or [rt.node_address]
    out: dict[str, float] = {}
    for address in addresses:  # exact figures from each node, not the head's periodic view
        try:
            reply = client.call(address, lambda rid: p.GetResources(rid), timeout=30)
        except Exception:
            continue  # a node that died meanwhile has nothing to offer
        for k, v in (reply.total if kind == "total" else reply.available).items():
            out[k] = out.get(k, 0.0) + v
    return {k: v for k, v in out.items() if v}


def nodes() -> list[dict[str, Any]]:
    """The cluster's nodes with Ray's keys (NodeID, Alive, NodeManagerAddress, Resources, ...)."""
    import socket

    from asyncray._private import protocol as p

    client = _client()
    reply = client.call(client.head_address, lambda rid: p.GetNodes(rid), timeout=30)
    out = []
    for node_id, address, resources, alive in reply.nodes:
        tcp = address.partition("|")[0]
        host, _, port = tcp.replace("tcp://", "").rpartition(":")
        out.append({"NodeID": node_id.hex(), "Alive": bool(alive), "alive": bool(alive),
                    "NodeManagerAddress": host, "NodeManagerHostname": socket.gethostname(),
                    "NodeManagerPort": int(port or 0), "Resources": dict(resources) if alive else {},
                    "Labels": {}})
    return out


def cluster_resources() -> dict[str, float]:
    return _resources("total")


def available_resources() -> dict[str, float]:
    return _resources("available")


def remote(*args: Any, **kwargs: Any) -> Any:
    """@remote or @remote(**options) on a function (a task) or a class (an actor)."""
    from asyncray.remote_function import RemoteFunction

    def make(target: Any, options: dict[str, Any]) -> Any:
        if inspect.isclass(target):
            from asyncray.actor import ActorClass

            return ActorClass(target, options)
        if not callable(target):
            raise TypeError(f"The @ray.remote decorator must be applied to a function or a class, got {target!r}.")
        return RemoteFunction(target, options)

    if len(args) == 1 and not kwargs and callable(args[0]):
        return make(args[0], {})
    if args:
        raise TypeError("The @ray.remote decorator takes either no arguments (@ray.remote) or keyword options "
                        "only (@ray.remote(num_cpus=2)).")
    return lambda target: make(target, kwargs)
