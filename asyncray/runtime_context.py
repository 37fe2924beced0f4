"""get_runtime_context(): who and where the calling code is (job, node, task, worker, actor)."""
from __future__ import annotations

from typing import Any


class RuntimeContext:
    def __init__(self, rt: Any) -> None:
        self._rt = rt

    def get_job_id(self) -> str:
        return self._rt.client.job_id.to_bytes(4, "big").hex()

    def get_node_id(self) -> str:
        return self._rt.node_id.hex()

    def get_worker_id(self) -> str:
        return self._rt.identity.hex()

    def get_task_id(self) -> str | None:
        from asyncray._private.worker.executor import context

        return context.task_id.hex() if context.task_id is not None else None

    def get_actor_id(self) -> str | None:
        return None

    def get_actor_name(self) -> str | None:
        return None

    @property
    def current_actor(self) -> Any:
        raise RuntimeError("This method is only available in an actor.")

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        return {}

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return False


def get_runtime_context() -> RuntimeContext:
    from asyncray._private.runtime import current
    from asyncray._private.api import auto_init

    rt = current() or auto_init()
    return RuntimeContext(rt)
