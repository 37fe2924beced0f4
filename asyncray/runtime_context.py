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
        actor = _actor_host()
        return actor.actor_id.hex() if actor is not None else None

    def get_actor_name(self) -> str | None:
        actor = _actor_host()
        return actor.name if actor is not None else None

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this code runs in."""
        actor = _actor_host()
        if actor is None:
            raise RuntimeError("This method is only available in an actor.")
        from asyncray.actor import ActorHandle

        spec = actor.spec
        token = None
        if spec.get("token"):
            token = self._rt.client.deserialized_ref(spec["token"][0], spec["token"][1])
        return ActorHandle(actor.actor_id, spec.get("class_name"), spec.get("methods", {}), actor.is_async, token,
                           spec.get("max_task_retries", 0), -1, actor.name, spec.get("namespace", ""))

    @property
    def namespace(self) -> str:
        return self._rt.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        actor = _actor_host()
        if actor is not None:
            return dict(actor.spec.get("shape") or {})
        executor = _executor()
        return dict(executor.assigned) if executor is not None else {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in get_gpu_ids()]}

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return False


def _executor() -> Any:
    from asyncray._private.runtime import current

    rt = current()
    return getattr(rt, "executor", None) if rt is not None else None


def get_gpu_ids() -> list[int]:
    """The GPU ids assigned to the current task or actor ([] in a driver), as in Ray."""
    executor = _executor()
    return list(executor.gpu_ids) if executor is not None else []


def _actor_host() -> Any:
    from asyncray._private.worker.executor import context

    return context.actor


def get_runtime_context() -> RuntimeContext:
    from asyncray._private.runtime import current
    from asyncray._private.api import auto_init

    rt = current() or auto_init()
    return RuntimeContext(rt)
