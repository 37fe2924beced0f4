"""RemoteFunction: what `@ray.remote` makes of a function. Holds options; submits through the runtime."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Generic, TypeVar

from asyncray._private import options as opts
from asyncray._private.protocol import STREAMING
from asyncray._private.scheduling import strategy as _strategy

R = TypeVar("R")


class RemoteFunction(Generic[R]):
    def __init__(self, fn: Callable[..., R], options: dict[str, Any]) -> None:
        opts.validate_task_options(options, in_options=False)
        self._function = fn
        self._options = options
        self._descriptor: Any = None
        self._plan: dict[str, Any] = {}  # submission arguments derived from the options, per runtime
        self._plan_client: Any = None
        self._inherits_group = False
        self._descriptor_client: Any = None
        functools.update_wrapper(self, fn)

    def __getstate__(self) -> dict[str, Any]:
        # The cached descriptor belongs to this process's runtime; a copy makes its own.
        state = dict(self.__dict__)
        state["_descriptor"] = state["_descriptor_client"] = state["_plan_client"] = None
        state["_plan"] = {}
        return state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self._function, "__name__", "f")
        raise TypeError(
            "Remote functions cannot be called directly. Instead "
            f"of running '{name}()', try '{name}.remote()'.")

    def options(self, **task_options: Any) -> "_BoundOptions[R]":
        opts.validate_task_options(task_options, in_options=True)
        return _BoundOptions(self, opts.merge_options(self._options, task_options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._remote(self, args, kwargs)

    def _remote(self, holder: Any, args: tuple, kwargs: dict) -> Any:
        """Submit with the options of `holder` (this function, or an .options() of it)."""
        from asyncray._private.runtime import current_client

        client = current_client()
        if self._descriptor is None or self._descriptor_client is not client:
            from asyncray._private.core.submitter import FunctionDescriptor

            self._descriptor = FunctionDescriptor(self._function)
            self._descriptor_client = client
        if holder._plan_client is not client:  # options -> submission arguments, once per runtime
            holder._plan = self._derive_plan(holder._options)
            holder._inherits_group = _strategy.inherits_group(holder._options)
            holder._plan_client = client
        plan = holder._plan
        if holder._inherits_group and _strategy.current_group() is not None:
            # Created by a task that runs in a placement group: may join it (decided per call).
            plan = {**plan, **self._placement(holder._options)}
        refs = client.submitter.submit_task(self._descriptor, args, kwargs, **plan)
        num_returns = plan["num_returns"]
        if num_returns == 0:
            return None
        return refs[0] if num_returns in (1, STREAMING) else refs

    def _derive_plan(self, options: dict[str, Any]) -> dict[str, Any]:
        full = {**opts.TASK_DEFAULTS, **options}
        num_returns = opts.resolve_num_returns(options.get("num_returns"),
                                               inspect.isgeneratorfunction(self._function))
        if num_returns == "dynamic":
            raise ValueError("num_returns='dynamic' was deprecated by Ray; use num_returns='streaming' "
                             "(the default for generator functions) instead.")
        if num_returns == "streaming":
            num_returns = STREAMING
        return {"num_returns": num_returns, "runtime_env": client_runtime_env(full.get("runtime_env")),
                "max_retries": full["max_retries"], "retry_exceptions": full["retry_exceptions"],
                "max_calls": opts.effective_max_calls(options), "name": full.get("name"), **self._placement(options)}

    def _placement(self, options: dict[str, Any]) -> dict[str, Any]:
        full = {**opts.TASK_DEFAULTS, **options}
        shape = opts.task_resources(full)
        placed = _strategy.resolve(full, shape, shape, f"task {getattr(self._function, '__qualname__', 'f')}")
        return {"shape": placed.held, "strategy": placed.strategy, "placement_group": placed.placement_group}


class _BoundOptions(Generic[R]):
    """`f.options(...)`: the function with per-call options; only `.remote()` is meaningful."""

    def __init__(self, rf: RemoteFunction[R], options: dict[str, Any]) -> None:
        self._rf = rf
        self._options = options
        self._plan: dict[str, Any] = {}
        self._plan_client: Any = None
        self._inherits_group = False

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._rf._remote(self, args, kwargs)


def client_runtime_env(task_env: Any) -> Any:
    """The task's runtime_env merged over the job's (init's), as in Ray."""
    from asyncray._private import api

    job_env = api.job_runtime_env()
    if not job_env:
        return task_env or None
    if not task_env:
        return job_env
    merged = dict(job_env)
    merged.update(task_env)
    if "env_vars" in job_env and "env_vars" in task_env:
        merged["env_vars"] = {**job_env["env_vars"], **task_env["env_vars"]}
    return merged
