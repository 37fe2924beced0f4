"""Actors: `@ray.remote` on a class makes an ActorClass; `.remote()` creates an actor and
returns its ActorHandle; `handle.method.remote()` calls it. These objects hold options and
hand off to the runtime (core/actor_submitter.py for calls, the head for creation)."""
from __future__ import annotations

import inspect
import os
import threading
from typing import Any, Callable

from asyncray._private import options as opts
from asyncray._private.protocol import STREAMING

_METHOD_KEYS = ("num_returns", "concurrency_group", "max_task_retries", "retry_exceptions")


def method(*args: Any, **kwargs: Any) -> Any:
    """@ray.method(num_returns=, concurrency_group=, max_task_retries=, retry_exceptions=)."""
    if args:
        raise TypeError("@ray.method takes keyword arguments only, e.g. @ray.method(num_returns=2).")
    opts.validate_method_options(kwargs)

    def mark(fn: Callable) -> Callable:
        fn.__asyncray_method__ = dict(kwargs)  # type: ignore[attr-defined]
        return fn

    return mark


def _method_table(cls: type) -> dict[str, dict[str, Any]]:
    """Each public method's options (from @ray.method) and kind, computed once per class."""
    table = {}
    for name, fn in inspect.getmembers(cls, predicate=inspect.isfunction):
        if name.startswith("__") and name != "__call__":
            continue
        meta = dict(getattr(fn, "__asyncray_method__", {}))
        meta["is_generator"] = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        table[name] = meta
    return table


def _is_async(cls: type) -> bool:
    return any(inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
               for _, m in inspect.getmembers(cls, predicate=inspect.isfunction))


class ActorClass:
    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        opts.validate_actor_options(options, in_options=False)
        self._cls = cls
        self._options = options
        self._methods = _method_table(cls)
        self._is_async = _is_async(cls)
        self._blob: bytes | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use "
                        f"'{self.__name__}.remote()'.")

    def options(self, **actor_options: Any) -> "_BoundActorOptions":
        opts.validate_actor_options(actor_options, in_options=True)
        return _BoundActorOptions(self, opts.merge_options(self._options, actor_options))

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._remote(self._options, args, kwargs)

    def _remote(self, options: dict[str, Any], args: tuple, kwargs: dict) -> "ActorHandle":
        from asyncray._private import protocol as p, serialization
        from asyncray._private.api import job_namespace
        from asyncray._private.runtime import current, current_client
        from asyncray.remote_function import client_runtime_env

        client = current_client()
        if self._blob is None:
            self._blob = serialization.dumps_function(self._cls)
        full = {**opts.ACTOR_DEFAULTS, **options}
        from asyncray._private.scheduling.strategy import resolve

        placed = resolve(full, *opts.actor_resources(options), f"actor {self.__name__}")
        name = full.get("name")
        namespace = full.get("namespace") or job_namespace()
        detached = full.get("lifetime") == "detached"
        actor_id = os.urandom(16)
        args_blob, deps, nested = client.submitter._serialize_args(args, kwargs)
        dep_payloads = client.payloads(deps, None) if deps else []
        token = None if detached else client.new_token(actor_id)
        spec = {
            "class_name": self.__name__, "class_blob": self._blob, "args_blob": args_blob, "deps": dep_payloads,
            "shape": placed.held, "placement": placed.placement, "strategy": placed.strategy,
            "placement_group": placed.placement_group, "max_restarts": full.get("max_restarts") or 0,
            "max_task_retries": full.get("max_task_retries") or 0,
            "max_concurrency": full.get("max_concurrency"), "concurrency_groups": full.get("concurrency_groups"),
            "is_async": self._is_async, "methods": self._methods,
            "runtime_env": client_runtime_env(full.get("runtime_env")), "name": name, "namespace": namespace,
            "lifetime": full.get("lifetime"), "job_id": client.job_id, "owner_address": client.address,
            "driver_address": client.driver_address, "get_if_exists": bool(full.get("get_if_exists")),
            "token": [token._id, token._owner] if token is not None else None,
        }
        rt = current()
        head = rt.head_address if rt is not None else ""
        reply = client.call(head, lambda rid: p.CreateActor(rid, actor_id, spec), timeout=60)
        del nested, deps  # they were kept alive until the head holds the spec
        if reply.error is not None:
            raise serialization.deserialize_exception(reply.error)
        if reply.info is not None:  # get_if_exists found it
            return ActorHandle._from_info(reply.info, client)
        return ActorHandle(actor_id, self.__name__, self._methods, self._is_async, token,
                           full.get("max_task_retries") or 0, full.get("max_pending_calls", -1), name or "",
                           namespace)


class _BoundActorOptions:
    def __init__(self, actor_class: ActorClass, options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        return self._actor_class._remote(self._options, args, kwargs)


class ActorHandle:
    """A handle to an actor: call its methods with `handle.method.remote(...)`. Pickles into a
    working handle in any process of the cluster; the actor lives while any handle does."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict, is_async: bool, token: Any,
                 max_task_retries: int, max_pending_calls: int = -1, name: str = "", namespace: str = "") -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._is_async = is_async
        self._token = token  # an ObjectRef the creator owns: counts the handles cluster-wide
        self._max_task_retries = max_task_retries
        self._max_pending_calls = max_pending_calls if max_pending_calls is not None else -1
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._name = name
        self._namespace = namespace
        from asyncray._private.runtime import current

        self._runtime = current()  # the cluster connection this handle was made in

    @classmethod
    def _from_info(cls, info: dict, client: Any) -> "ActorHandle":
        token = client.deserialized_ref(info["token"][0], info["token"][1]) if info.get("token") else None
        return cls(info["actor_id"], info["class_name"], info["methods"], info["is_async"], token,
                   info.get("max_task_retries", 0), -1, info.get("name", ""), info.get("namespace", ""))

    def __getattr__(self, name: str) -> "ActorMethod":
        methods = self.__dict__.get("_methods")
        if methods is None or name not in methods:
            if name.startswith("__"):
                raise AttributeError(name)
            raise AttributeError(f"'{self.__dict__.get('_class_name', 'ActorHandle')}' actor has no method "
                                 f"'{name}'; its methods are: {', '.join(sorted(methods or ())) or 'none'}.")
        return ActorMethod(self, name, methods[name])

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __reduce__(self):
        return _rebuild_handle, (self._actor_id, self._class_name, self._methods, self._is_async, self._token,
                                 self._max_task_retries, self._name, self._namespace)

    # -- max_pending_calls, counted per handle ----------------------------------------------------
    def _take_slot(self) -> Callable[[], None] | None:
        if self._max_pending_calls is None or self._max_pending_calls < 0:
            return None
        with self._pending_lock:
            if self._pending >= self._max_pending_calls:
                from asyncray.exceptions import PendingCallsLimitExceeded

                raise PendingCallsLimitExceeded(
                    f"The actor {self._class_name} ({self._actor_id.hex()}) has {self._pending} calls pending from "
                    f"this handle, the max_pending_calls limit. Wait for some to finish before submitting more.")
            self._pending += 1

        def done() -> None:
            with self._pending_lock:
                self._pending -= 1

        return done


def _rebuild_handle(actor_id: bytes, class_name: str, methods: dict, is_async: bool, token: Any,
                    max_task_retries: int, name: str = "", namespace: str = "") -> ActorHandle:
    return ActorHandle(actor_id, class_name, methods, is_async, token, max_task_retries, -1, name, namespace)


class ActorMethod:
    """`handle.method`: only `.remote()` and `.options()` are meaningful. Made per access, so it
    holds no long-lived reference to the handle (as in Ray)."""

    def __init__(self, handle: ActorHandle, name: str, meta: dict, options: dict | None = None) -> None:
        self._handle = handle
        self._name = name
        self._meta = meta
        self._options = options or {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actor methods cannot be called directly. Instead of running 'object.{self._name}()', "
                        f"try 'object.{self._name}.remote()'.")

    def options(self, **method_options: Any) -> "ActorMethod":
        opts.validate_method_options(method_options)
        return ActorMethod(self._handle, self._name, self._meta, {**self._options, **method_options})

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from asyncray._private.runtime import current, current_client

        h = self._handle
        if h._runtime is not None and h._runtime is not current():
            raise RuntimeError(f"This handle to actor {h._class_name} ({h._actor_id.hex()}) belongs to a cluster "
                               "connection that was shut down; its actor is gone with it. Create the actor again "
                               "after ray.init(), or look a detached one up with ray.get_actor(name).")
        merged = {**self._meta, **self._options}
        num_returns = merged.get("num_returns")
        if num_returns is None:
            num_returns = "streaming" if merged.get("is_generator") else 1
        if num_returns == "streaming":
            num_returns = STREAMING
        retries = merged.get("max_task_retries")
        if retries is None:
            retries = h._max_task_retries
        done = h._take_slot()
        try:
            refs = current_client().actor_submitter.submit_call(
                h._actor_id, h._class_name, self._name, args, kwargs, num_returns=num_returns,
                max_task_retries=retries, retry_exceptions=merged.get("retry_exceptions") or False,
                group=merged.get("concurrency_group"), on_done=done, token=h._token)
        except BaseException:
            if done is not None:
                done()
            raise
        if num_returns == 0:
            return None
        return refs[0] if num_returns in (1, STREAMING) else refs


def exit_actor() -> None:
    """End the current actor from inside one of its methods, as ray.actor.exit_actor()."""
    from asyncray._private.worker.actor_host import exit_actor as _exit

    _exit()
