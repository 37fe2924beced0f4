"""asyncray: Ray Core's programming model on an asyncio-native runtime.

`import asyncray as ray` and use it as Ray: remote functions, ObjectRefs, get/put/wait, and
awaitable variants (`await ref`, `await asyncray.get_async(refs)`). Importing starts nothing:
no thread, socket, process or environment change until init() or the first remote call.

Names are loaded on first use (PEP 562), so `import asyncray` is fast and the runtime's own
processes (head, node manager), which import this package first, do not load the client.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "ObjectRef": "asyncray.object_ref",
    "ObjectRefGenerator": "asyncray.object_ref",
    "available_resources": "asyncray._private.api",
    "cancel": "asyncray._private.api",
    "cluster_resources": "asyncray._private.api",
    "get": "asyncray._private.api",
    "get_async": "asyncray._private.api",
    "init": "asyncray._private.api",
    "is_initialized": "asyncray._private.api",
    "put": "asyncray._private.api",
    "remote": "asyncray._private.api",
    "shutdown": "asyncray._private.api",
    "wait": "asyncray._private.api",
    "wait_async": "asyncray._private.api",
    "get_runtime_context": "asyncray.runtime_context",
    "get_gpu_ids": "asyncray.runtime_context",
    "nodes": "asyncray._private.api",
    "kill": "asyncray._private.api",
    "get_actor": "asyncray._private.api",
    "method": "asyncray.actor",
}
_MODULES = {"exceptions", "actor", "util"}

__all__ = sorted([*_WHERE, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"asyncray.{name}")
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'asyncray' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from asyncray import actor, exceptions, util
    from asyncray._private.api import (
        get_actor,
        kill,
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_async,
        init,
        is_initialized,
        put,
        remote,
        shutdown,
        wait,
        wait_async,
    )
    from asyncray.actor import method
    from asyncray.object_ref import ObjectRef, ObjectRefGenerator
    from asyncray._private.api import nodes
    from asyncray.runtime_context import get_gpu_ids, get_runtime_context
