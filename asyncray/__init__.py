"""asyncray: Ray Core's programming model on an asyncio-native runtime.

`import asyncray as ray` and use it as Ray: remote functions, ObjectRefs, get/put/wait, and
awaitable variants (`await ref`, `await asyncray.get_async(refs)`). Importing starts nothing:
no thread, socket, process or environment change until init() or the first remote call.
"""
from asyncray import exceptions
from asyncray._private.api import (
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
from asyncray.object_ref import ObjectRef, ObjectRefGenerator
from asyncray.runtime_context import get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ObjectRef",
    "ObjectRefGenerator",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_async",
    "get_runtime_context",
    "init",
    "is_initialized",
    "put",
    "remote",
    "shutdown",
    "wait",
    "wait_async",
]
