"""The one option table for remote functions, actor classes and actor methods.

This module owns which keyword options ``@ray.remote(...)``,
``f.options(...)``, ``ActorClass.options(...)``, ``@ray.method(...)`` and
``handle.method.options(...)`` accept, their types, allowed values and
defaults, how they combine (``merge_options``), what resources they request
(``task_resources`` / ``actor_resources``) and which ``runtime_env`` asyncray
can honour (``validate_runtime_env``).  It mirrors Ray 2.x
``python/ray/_private/ray_option_utils.py`` (same keywords, defaults, error
texts where Ray has them) and imports only the standard library.

Every error names the option, the bad value and what would be valid:
unknown keyword -> ValueError, wrong type -> TypeError, bad value ->
ValueError.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = [
    "Option",
    "OPTIONS",
    "TASK_DEFAULTS",
    "ACTOR_DEFAULTS",
    "METHOD_DEFAULTS",
    "RESOURCE_UNIT_SCALING",
    "validate_task_options",
    "validate_actor_options",
    "validate_method_options",
    "validate_runtime_env",
    "merge_options",
    "task_resources",
    "actor_resources",
    "effective_max_calls",
    "resolve_num_returns",
    "task_option_names",
    "actor_option_names",
    "method_option_names",
]

TASK = "task"
ACTOR = "actor"
METHOD = "method"

_KIND_WORDS = {
    TASK: "remote functions",
    ACTOR: "actors",
    METHOD: "actor methods",
}

# Resource quantities are fixed point with this many units per 1.0 (Ray's
# RESOURCE_UNIT_SCALING): the finest non-zero quantity is 0.0001.
RESOURCE_UNIT_SCALING = 10000

DEFAULT_TASK_MAX_RETRIES = 3

_NoneType = type(None)


# ---------------------------------------------------------------------------
# Value checkers.  Each takes (name, value, kind) and returns an error message
# (-> ValueError) or None.  Type errors are found by Option.types first.
# ---------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resource_quantity_error(name: str, quantity: Any) -> Optional[str]:
    """Ray's _validate_resource_quantity, plus finiteness."""
    if not _is_number(quantity):
        return None  # type problems are reported separately
    if isinstance(quantity, float) and not math.isfinite(quantity):
        return (
            f"The quantity of resource {name} must be a finite number, got "
            f"{_fmt(quantity)}. Use 0 or a positive number."
        )
    if quantity < 0:
        return (
            f"The quantity of resource {name} cannot be negative, got "
            f"{_fmt(quantity)}. Use 0 or a positive number."
        )
    if (
        isinstance(quantity, float)
        and quantity != 0.0
        and int(quantity * RESOURCE_UNIT_SCALING) == 0
    ):
        return (
            f"The precision of the fractional quantity of resource {name} cannot "
            f"go beyond 0.0001, got {_fmt(quantity)}. Use 0 or a value >= 0.0001."
        )
    return None


def _check_resource(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    return _resource_quantity_error(name, value)


def _counting(infinite: bool, minimum: Optional[int] = None) -> Callable:
    """Ray's _counting_option: None, 0, positive ints (and -1 if infinite)."""

    def check(name: str, value: Any, kind: str) -> Optional[str]:
        if value is None:
            return None
        low = minimum if minimum is not None else (-1 if infinite else 0)
        if value >= low:
            return None
        if minimum is not None and minimum > 0:
            return (
                f"The keyword '{name}' only accepts None or an integer >= {minimum}, "
                f"got {_fmt(value)}."
            )
        if infinite:
            return (
                f"The keyword '{name}' only accepts None, 0, -1 or a positive "
                f"integer, where -1 represents infinity. Got {_fmt(value)}."
            )
        return (
            f"The keyword '{name}' only accepts None, 0 or a positive integer. "
            f"Got {_fmt(value)}."
        )

    return check


def _check_num_returns(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None or value in ("streaming", "dynamic"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return (
        f"The keyword 'num_returns' only accepts None, a non-negative integer, "
        f"'streaming' (for generators) or 'dynamic' (deprecated, use 'streaming'). "
        f"Got {_fmt(value)}."
    )


def _issubclass_safe(obj: Any, cls: type) -> bool:
    try:
        return isinstance(obj, type) and issubclass(obj, cls)
    except TypeError:
        return False


def _check_retry_exceptions(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None or isinstance(value, bool):
        return None
    bad = [x for x in value if not _issubclass_safe(x, Exception)]
    if not bad:
        return None
    return (
        "retry_exceptions must be either a boolean or a list of exceptions "
        f"(subclasses of Exception), got {_fmt(value)}; not exception classes: "
        f"{_fmt(bad)}."
    )


def _check_generator_backpressure(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None or value == -1 or value > 0:
        return None
    return (
        f"{name}={_fmt(value)} is not allowed. Use a value > 0. If the value is "
        "equal to 1, the behavior is identical to a Python generator (one object "
        "is generated whenever `next` is called). Use -1 to disable this feature."
    )


def _check_resources_dict(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    for key in ("CPU", "GPU"):
        if key in value:
            return (
                "Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and "
                f"'GPU' in 'resources' keyword (got resources={_fmt(value)})."
            )
    for key in ("memory", "object_store_memory"):
        if key in value:
            return (
                f"Use the '{key}' keyword instead of '{key}' in 'resources' keyword "
                f"(got resources={_fmt(value)})."
            )
    for res_name, quantity in value.items():
        if not isinstance(res_name, str) or not res_name:
            return (
                "Resource names in 'resources' must be non-empty strings, got "
                f"{_fmt(res_name)} in resources={_fmt(value)}."
            )
        if not _is_number(quantity):
            raise TypeError(
                f"The quantity of resource {res_name!r} in 'resources' must be an "
                f"int or float, but received type {type(quantity).__name__}: "
                f"{_fmt(quantity)}."
            )
        err = _resource_quantity_error(res_name, quantity)
        if err:
            return err
    return None


def _check_scheduling_strategy(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        if value in ("DEFAULT", "SPREAD"):
            return None
        return (
            f"The keyword 'scheduling_strategy' only accepts None, 'DEFAULT', "
            f"'SPREAD' or a SchedulingStrategy object, got {_fmt(value)}."
        )
    return None


def _check_lifetime(name: str, value: Any, kind: str) -> Optional[str]:
    if value in (None, "detached", "non_detached"):
        return None
    return (
        "actor `lifetime` argument must be one of 'detached', 'non_detached' and "
        f"'None', got {_fmt(value)}."
    )


def _check_name(name: str, value: Any, kind: str) -> Optional[str]:
    if kind == ACTOR and value == "":
        return "Actor name cannot be an empty string. Pass None for an anonymous actor."
    return None


def _check_namespace(name: str, value: Any, kind: str) -> Optional[str]:
    if value == "":
        return '"" is not a valid namespace. Pass None to not specify a namespace.'
    return None


def _check_object_store_memory(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    if kind == TASK:
        return (
            "Setting 'object_store_memory' is not implemented for tasks "
            f"(got {_fmt(value)}). Remove it."
        )
    if value < 0:
        return (
            "The keyword 'object_store_memory' only accepts None, 0 or a positive "
            f"integer. Got {_fmt(value)}."
        )
    return None


def _check_concurrency_groups(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    for group, limit in value.items():
        if not isinstance(group, str) or not group:
            return (
                "concurrency_groups keys must be non-empty group names (str), got "
                f"{_fmt(group)} in concurrency_groups={_fmt(value)}."
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return (
                f"concurrency_groups[{group!r}] must be an integer >= 1 (the max "
                f"concurrency of that group), got {_fmt(limit)}."
            )
    return None


def _check_str_dict(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None:
        return None
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            return (
                f"The keyword '{name}' must be a dict of str to str, got entry "
                f"{_fmt(k)}: {_fmt(v)}."
            )
    return None


def _check_placement_group(name: str, value: Any, kind: str) -> Optional[str]:
    if value is None or value == "default":
        return None
    if isinstance(value, str):
        return (
            f"The keyword 'placement_group' only accepts None, 'default' or a "
            f"PlacementGroup, got {_fmt(value)}."
        )
    return None


def _check_bundle_index(name: str, value: Any, kind: str) -> Optional[str]:
    if value >= -1:
        return None
    return (
        "The keyword 'placement_group_bundle_index' only accepts -1 (any bundle) "
        f"or a bundle index >= 0, got {_fmt(value)}."
    )


# Objects accepted by class name, since the classes live in modules this one
# must not import (placement groups, scheduling strategies).
def _is_scheduling_strategy_object(value: Any) -> bool:
    return any(k.__name__.endswith("SchedulingStrategy") for k in type(value).__mro__)


def _is_placement_group_object(value: Any) -> bool:
    return any(k.__name__ == "PlacementGroup" for k in type(value).__mro__)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One keyword option.

    Attributes:
        name: The keyword.
        kinds: Where it is accepted: subset of {"task", "actor", "method"}.
        types: Accepted Python types (bool is never accepted as a number).
        type_desc: Human readable form of ``types`` for error messages.
        check: ``(name, value, kind) -> error message or None``.
        defaults: Default per kind (absent kind -> None).
        decorator_only: Accepted in ``@ray.remote(...)`` but not ``.options()``.
        accepts: Extra predicate accepting values of other types (objects
            recognised by class name, e.g. scheduling strategies).
        doc: One-line description.
    """

    name: str
    kinds: frozenset
    types: Tuple[type, ...]
    type_desc: str
    check: Optional[Callable[[str, Any, str], Optional[str]]] = None
    defaults: Dict[str, Any] = field(default_factory=dict)
    decorator_only: Tuple[str, ...] = ()
    accepts: Optional[Callable[[Any], bool]] = None
    doc: str = ""

    def default(self, kind: str) -> Any:
        return self.defaults.get(kind)

    def validate(self, value: Any, kind: str) -> None:
        """Raise TypeError / ValueError if ``value`` is not valid for ``kind``."""
        if self.accepts is not None and self.accepts(value):
            return
        numeric = int in self.types or float in self.types
        if not isinstance(value, self.types) or (
            numeric and isinstance(value, bool) and bool not in self.types
        ):
            raise TypeError(
                f"The type of keyword '{self.name}' must be {self.type_desc}, but "
                f"received type {type(value).__name__}: {_fmt(value)}."
            )
        if self.check is not None:
            message = self.check(self.name, value, kind)
            if message:
                raise ValueError(message)


def _opt(
    name: str,
    kinds: str,
    types: Tuple[type, ...],
    type_desc: str,
    check: Optional[Callable] = None,
    defaults: Optional[Dict[str, Any]] = None,
    decorator_only: Tuple[str, ...] = (),
    accepts: Optional[Callable[[Any], bool]] = None,
    doc: str = "",
) -> Option:
    kind_set = frozenset({"t": TASK, "a": ACTOR, "m": METHOD}[c] for c in kinds)
    return Option(
        name=name,
        kinds=kind_set,
        types=types,
        type_desc=type_desc,
        check=check,
        defaults=dict(defaults or {}),
        decorator_only=decorator_only,
        accepts=accepts,
        doc=doc,
    )


_NUM = (int, float, _NoneType)
_NUM_DESC = "int, float or None"
_INT = (int, _NoneType)
_INT_DESC = "int or None"

_OPTION_LIST = [
    # -- common to tasks and actors ------------------------------------------
    _opt("accelerator_type", "ta", (str, _NoneType), "str or None",
         doc="Require a node with this accelerator type."),
    _opt("memory", "ta", _NUM, _NUM_DESC, _check_resource,
         doc="Heap memory (bytes) to reserve."),
    _opt("name", "tam", (str, _NoneType), "str or None", _check_name,
         doc="Task name (display) or actor name (for ray.get_actor)."),
    _opt("num_cpus", "ta", _NUM, _NUM_DESC, _check_resource, {TASK: 1},
         doc="CPUs to reserve (tasks default to 1)."),
    _opt("num_gpus", "ta", _NUM, _NUM_DESC, _check_resource,
         doc="GPUs to reserve."),
    _opt("object_store_memory", "ta", _INT, _INT_DESC, _check_object_store_memory,
         doc="Deprecated for actors; not implemented for tasks."),
    _opt("placement_group", "ta", (str, _NoneType),
         "None, 'default' or a PlacementGroup", _check_placement_group,
         {TASK: "default", ACTOR: "default"}, accepts=_is_placement_group_object,
         doc="Deprecated: use scheduling_strategy=PlacementGroupSchedulingStrategy."),
    _opt("placement_group_bundle_index", "ta", (int,), "int", _check_bundle_index,
         {TASK: -1, ACTOR: -1},
         doc="Deprecated: use scheduling_strategy=PlacementGroupSchedulingStrategy."),
    _opt("placement_group_capture_child_tasks", "ta", (bool, _NoneType),
         "bool or None",
         doc="Deprecated: use scheduling_strategy=PlacementGroupSchedulingStrategy."),
    _opt("resources", "ta", (dict, _NoneType), "dict or None", _check_resources_dict,
         doc="Custom resources {name: quantity}."),
    _opt("runtime_env", "ta", (dict, _NoneType), "dict or None",
         doc="Per task/actor runtime environment (see validate_runtime_env)."),
    _opt("scheduling_strategy", "ta", (str, _NoneType),
         "None, 'DEFAULT', 'SPREAD' or a *SchedulingStrategy object",
         _check_scheduling_strategy, accepts=_is_scheduling_strategy_object,
         doc="Where to place the task/actor."),
    _opt("_metadata", "ta", (dict, _NoneType), "dict or None",
         doc="Library metadata {namespace: config}, merged per namespace."),
    _opt("enable_task_events", "tam", (bool, _NoneType), "bool or None",
         defaults={TASK: True, ACTOR: True},
         doc="Report task events (observability)."),
    _opt("_labels", "ta", (dict, _NoneType), "dict or None", _check_str_dict,
         doc="Key-value labels of the task/actor."),
    _opt("label_selector", "ta", (dict, _NoneType), "dict or None", _check_str_dict,
         doc="Node labels required for placement."),
    _opt("fallback_strategy", "ta", (list, _NoneType), "list or None",
         doc="Alternative label selectors tried in order."),
    # -- tasks only ----------------------------------------------------------
    _opt("max_calls", "t", _INT, _INT_DESC, _counting(False), {TASK: 0},
         decorator_only=(TASK,),
         doc="Max tasks a worker runs before it is replaced (0 = unlimited)."),
    _opt("max_retries", "t", _INT, _INT_DESC, _counting(True),
         {TASK: DEFAULT_TASK_MAX_RETRIES},
         doc="Retries on worker/system failure (-1 = infinite)."),
    _opt("num_returns", "tm", (int, str, _NoneType),
         "int, 'streaming', 'dynamic' or None", _check_num_returns, {TASK: 1},
         doc="Number of return ObjectRefs, or 'streaming' for generators."),
    _opt("retry_exceptions", "tm", (bool, list, tuple, _NoneType),
         "bool, a list/tuple of exception classes or None", _check_retry_exceptions,
         {TASK: False},
         doc="Also retry on application exceptions (all, or these classes)."),
    _opt("_generator_backpressure_num_objects", "tm", _INT, _INT_DESC,
         _check_generator_backpressure,
         doc="Pause a streaming generator after this many unconsumed objects."),
    # -- actors only ---------------------------------------------------------
    _opt("concurrency_groups", "a", (dict, _NoneType), "dict or None",
         _check_concurrency_groups, decorator_only=(ACTOR,),
         doc="{group name: max concurrency} for @ray.method(concurrency_group=)."),
    _opt("lifetime", "a", (str, _NoneType), "str or None", _check_lifetime,
         doc="None, 'detached' or 'non_detached'."),
    _opt("max_concurrency", "a", _INT, _INT_DESC, _counting(False, minimum=1),
         doc="Concurrent calls (default 1 for sync actors, 1000 for async)."),
    _opt("max_restarts", "a", _INT, _INT_DESC, _counting(True), {ACTOR: 0},
         doc="Restarts after the actor dies (-1 = infinite)."),
    _opt("max_task_retries", "am", _INT, _INT_DESC, _counting(True), {ACTOR: 0},
         doc="Retries of actor tasks on actor death (-1 = infinite)."),
    _opt("max_pending_calls", "a", _INT, _INT_DESC, _counting(True), {ACTOR: -1},
         doc="Per-handle limit of pending calls (-1 = unlimited)."),
    _opt("namespace", "a", (str, _NoneType), "str or None", _check_namespace,
         doc="Namespace of a named actor."),
    _opt("get_if_exists", "a", (bool,), "bool", defaults={ACTOR: False},
         doc="Return the existing named actor instead of failing."),
    _opt("allow_out_of_order_execution", "a", (bool,), "bool",
         defaults={ACTOR: False},
         doc="Let calls from one caller run out of submission order."),
    _opt("_ray_allow_out_of_order_execution", "a", (bool,), "bool",
         defaults={ACTOR: False},
         doc="Older name of allow_out_of_order_execution."),
    # -- actor methods only --------------------------------------------------
    _opt("concurrency_group", "m", (str, _NoneType), "str or None",
         doc="Concurrency group the method runs in."),
]

#: The option table: keyword -> Option.
OPTIONS: Dict[str, Option] = {o.name: o for o in _OPTION_LIST}
assert len(OPTIONS) == len(_OPTION_LIST), "duplicate option"


def _names(kind: str) -> list:
    return [o.name for o in _OPTION_LIST if kind in o.kinds]


def task_option_names() -> list:
    """Keywords accepted for remote functions, in table order."""
    return _names(TASK)


def actor_option_names() -> list:
    """Keywords accepted for actor classes, in table order."""
    return _names(ACTOR)


def method_option_names() -> list:
    """Keywords accepted for actor methods, in table order."""
    return _names(METHOD)


def _defaults(kind: str) -> Dict[str, Any]:
    return {o.name: o.default(kind) for o in _OPTION_LIST if kind in o.kinds}


#: Ray's defaults for remote functions (num_cpus 1, num_returns 1,
#: max_retries 3, retry_exceptions False, max_calls 0 = unlimited, ...).
TASK_DEFAULTS: Dict[str, Any] = _defaults(TASK)
#: Ray's defaults for actors (max_restarts 0, max_task_retries 0,
#: max_pending_calls -1, lifetime None, max_concurrency None = 1 sync / 1000 async).
ACTOR_DEFAULTS: Dict[str, Any] = _defaults(ACTOR)
#: Defaults for actor methods; None means "inherit" (num_returns None -> 1, or
#: 'streaming' for generator methods; max_task_retries None -> the actor's).
METHOD_DEFAULTS: Dict[str, Any] = _defaults(METHOD)


# Hints for keywords that exist, but not for this kind.
_WRONG_KIND_HINTS = {
    (TASK, "max_restarts"): "it only applies to actors (@ray.remote on a class)",
    (TASK, "max_task_retries"): (
        "it only applies to actors; use 'max_retries' for remote functions"
    ),
    (TASK, "concurrency_group"): "it only applies to actor methods (@ray.method)",
    (ACTOR, "max_retries"): (
        "it only applies to remote functions; for actors use 'max_restarts' and "
        "'max_task_retries'"
    ),
    (ACTOR, "num_returns"): (
        "set it per method with @ray.method(num_returns=...) or "
        "handle.method.options(num_returns=...)"
    ),
    (ACTOR, "retry_exceptions"): (
        "set it per method with @ray.method(retry_exceptions=...)"
    ),
    (ACTOR, "max_calls"): "it only applies to remote functions",
    (ACTOR, "concurrency_group"): (
        "set it per method with @ray.method(concurrency_group=...) and declare the "
        "groups with @ray.remote(concurrency_groups={...}) on the class"
    ),
}


def _unknown_keyword_error(key: Any, kind: str) -> ValueError:
    valid = _names(kind)
    msg = f"Invalid option keyword {key} for {_KIND_WORDS[kind]}."
    hint = _WRONG_KIND_HINTS.get((kind, key))
    if hint is None and key in OPTIONS:
        other = sorted(_KIND_WORDS[k] for k in OPTIONS[key].kinds)
        if kind == METHOD:
            hint = (
                f"it only applies to {' and '.join(other)}; actor methods run with "
                "the resources and settings of their actor, set it on the actor class"
            )
        else:
            hint = f"it only applies to {' and '.join(other)}"
    if hint:
        msg += f" '{key}' is not valid here: {hint}."
    msg += f" Valid ones are {valid}."
    return ValueError(msg)


def _validate_items(options: Mapping[str, Any], kind: str) -> None:
    if not isinstance(options, Mapping):
        raise TypeError(
            f"Options for {_KIND_WORDS[kind]} must be a dict of keyword arguments, "
            f"got {type(options).__name__}: {_fmt(options)}."
        )
    for key, value in options.items():
        opt = OPTIONS.get(key) if isinstance(key, str) else None
        if opt is None or kind not in opt.kinds:
            raise _unknown_keyword_error(key, kind)
        opt.validate(value, kind)
        if key == "runtime_env" and value is not None:
            validate_runtime_env(value)


def _check_deprecated_placement_group(options: Mapping[str, Any]) -> None:
    placement_group = options.get("placement_group", "default")
    scheduling_strategy = options.get("scheduling_strategy")
    if placement_group not in ("default", None) and scheduling_strategy is not None:
        raise ValueError(
            "Placement groups should be specified via the scheduling_strategy option. "
            "The placement_group option is deprecated. Got placement_group="
            f"{_fmt(placement_group)} together with scheduling_strategy="
            f"{_fmt(scheduling_strategy)}; pass only scheduling_strategy="
            "PlacementGroupSchedulingStrategy(placement_group, ...)."
        )
    for key, unset in (
        ("placement_group", "default"),
        ("placement_group_bundle_index", -1),
        ("placement_group_capture_child_tasks", None),
    ):
        if key in options and options[key] != unset and options[key] is not None:
            warnings.warn(
                f"{key} parameter is deprecated. Use "
                "scheduling_strategy=PlacementGroupSchedulingStrategy(...) instead.",
                DeprecationWarning,
                stacklevel=4,
            )


def validate_task_options(options: Mapping[str, Any], in_options: bool) -> None:
    """Validate options for a remote function.

    Args:
        options: ``@ray.remote(...)`` or ``f.options(...)`` keyword arguments.
        in_options: True when checking ``.options()`` (max_calls is refused).

    Raises:
        ValueError: unknown or actor-only keyword, bad value, max_calls in
            ``.options()``, CPU/GPU inside ``resources``, unsupported runtime_env.
        TypeError: wrong type.
    """
    _validate_items(options, TASK)
    if in_options and "max_calls" in options:
        raise ValueError(
            "Setting 'max_calls' is not supported in '.options()'. Set it in the "
            f"decorator instead: @ray.remote(max_calls={_fmt(options['max_calls'])})."
        )
    _check_deprecated_placement_group(options)


def validate_actor_options(options: Mapping[str, Any], in_options: bool) -> None:
    """Validate options for an actor class.

    Args:
        options: ``@ray.remote(...)`` on a class or ``Cls.options(...)`` kwargs.
        in_options: True when checking ``.options()`` (concurrency_groups is
            refused there, as in Ray).

    Raises:
        ValueError: unknown or task-only keyword, bad value, concurrency_groups
            in ``.options()``, get_if_exists without name, bad runtime_env.
        TypeError: wrong type.
    """
    _validate_items(options, ACTOR)
    if in_options and "concurrency_groups" in options:
        raise ValueError(
            "Setting 'concurrency_groups' is not supported in '.options()'. Declare "
            "them in the class decorator: @ray.remote(concurrency_groups={...})."
        )
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError(
            "The actor name must be specified to use `get_if_exists` (got "
            f"name={_fmt(options.get('name'))}). Pass name='...' as well."
        )
    if options.get("object_store_memory") is not None:
        warnings.warn(
            "Setting 'object_store_memory' for actors is deprecated since it doesn't "
            "actually reserve the required object store memory. asyncray ignores it.",
            DeprecationWarning,
            stacklevel=3,
        )
    _check_deprecated_placement_group(options)


def validate_method_options(options: Mapping[str, Any]) -> None:
    """Validate ``@ray.method(...)`` / ``handle.method.options(...)`` options.

    Accepted: name, num_returns, concurrency_group, max_task_retries,
    retry_exceptions, _generator_backpressure_num_objects, enable_task_events.
    """
    _validate_items(options, METHOD)


# ---------------------------------------------------------------------------
# Combining options and deriving resources
# ---------------------------------------------------------------------------


def merge_options(base: Mapping[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    """Return ``{**base, **override}`` as a new dict.

    ``runtime_env`` from ``override`` replaces the base one whole (no key
    merge).  ``_metadata`` is merged per namespace, as Ray's update_options.
    Neither input is modified.
    """
    merged = {**base, **override}
    base_meta = base.get("_metadata")
    new_meta = override.get("_metadata")
    if base_meta is not None and new_meta is not None:
        metadata = dict(base_meta)
        for namespace, config in new_meta.items():
            metadata[namespace] = {**metadata.get(namespace, {}), **config}
        merged["_metadata"] = metadata
    return merged


def _resources_from_options(options: Mapping[str, Any]) -> Dict[str, float]:
    """Ray's resources_from_ray_options, without dropping zero entries."""
    resources = dict(options.get("resources") or {})
    if options.get("num_cpus") is not None:
        resources["CPU"] = options["num_cpus"]
    if options.get("num_gpus") is not None:
        resources["GPU"] = options["num_gpus"]
    if options.get("memory") is not None:
        resources["memory"] = int(options["memory"])
    accelerator_type = options.get("accelerator_type")
    if accelerator_type is not None:
        resources[f"accelerator_type:{accelerator_type}"] = 0.001
    return resources


def _drop_zero(resources: Mapping[str, float]) -> Dict[str, float]:
    return {k: v for k, v in resources.items() if v}


def task_resources(options: Mapping[str, Any]) -> Dict[str, float]:
    """Resources a task needs while it runs.

    ``{"CPU": num_cpus (default 1), "GPU": num_gpus, "memory": memory,
    "accelerator_type:<T>": 0.001, **resources}`` with zero entries dropped.
    """
    resources = _resources_from_options(options)
    if options.get("num_cpus") is None:
        resources["CPU"] = TASK_DEFAULTS["num_cpus"]
    return _drop_zero(resources)


def actor_resources(options: Mapping[str, Any]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Return ``(placement_resources, held_resources)`` for an actor.

    Ray's rule: if no resource is specified at all (``memory`` alone does not
    count), the actor needs 1 CPU to be placed but holds 0 CPU while alive.
    Otherwise it holds exactly what it asked for, with CPU defaulting to 1
    if not given (so ``num_gpus=1`` holds 1 CPU and 1 GPU), and placement
    needs the same.  Zero entries are dropped from both dicts.
    """
    held = _resources_from_options(options)
    if not set(held).difference({"memory", "object_store_memory"}):
        held.setdefault("CPU", 0)
        placement = dict(held)
        placement["CPU"] += 1
    else:
        held.setdefault("CPU", 1)
        placement = dict(held)
    return _drop_zero(placement), _drop_zero(held)


def effective_max_calls(options: Mapping[str, Any]) -> int:
    """Tasks a worker may run before being replaced; 0 means unlimited.

    As in Ray, a GPU function without an explicit max_calls gets 1 (so GPU
    memory is released after every task).  Pass the user's options (decorator
    plus ``.options()``), not options already merged with TASK_DEFAULTS,
    where max_calls would always be set.
    """
    max_calls = options.get("max_calls")
    if max_calls is not None:
        return int(max_calls)
    num_gpus = options.get("num_gpus") or 0
    return 1 if num_gpus > 0 else 0


def resolve_num_returns(num_returns: Any, is_generator: bool) -> Any:
    """Ray's num_returns default: None -> 'streaming' for generators, else 1."""
    if num_returns is None:
        return "streaming" if is_generator else 1
    return num_returns


# ---------------------------------------------------------------------------
# runtime_env
# ---------------------------------------------------------------------------

_SUPPORTED_RUNTIME_ENV_KEYS = ("env_vars", "working_dir")

# runtime_env keys Ray knows but asyncray does not implement -> what to do.
_UNSUPPORTED_RUNTIME_ENV_KEYS = {
    "pip": (
        "Install the packages into the Python environment the driver runs in "
        "(asyncray workers use the driver's interpreter) and remove 'pip'."
    ),
    "uv": (
        "Install the packages into the Python environment the driver runs in "
        "(asyncray workers use the driver's interpreter) and remove 'uv'."
    ),
    "conda": (
        "Activate the conda environment before starting the driver (asyncray "
        "workers use the driver's interpreter) and remove 'conda'."
    ),
    "container": (
        "asyncray runs workers as local processes; run the whole program inside "
        "the container instead and remove 'container'."
    ),
    "image_uri": (
        "asyncray runs workers as local processes; run the whole program inside "
        "the image instead and remove 'image_uri'."
    ),
    "py_modules": (
        "Put the modules under 'working_dir', or install them (pip install -e) "
        "into the driver's environment, and remove 'py_modules'."
    ),
    "py_executable": (
        "asyncray workers use the driver's interpreter; start the driver with the "
        "interpreter you want and remove 'py_executable'."
    ),
    "excludes": (
        "asyncray uses 'working_dir' in place and never uploads it, so there is "
        "nothing to exclude; remove 'excludes'."
    ),
    "config": (
        "asyncray does no environment setup, so setup_timeout_seconds / "
        "eager_install do not apply; remove 'config'."
    ),
    "nsight": (
        "Profile the worker processes with the tool directly and remove 'nsight'."
    ),
    "rocprof_sys": (
        "Profile the worker processes with the tool directly and remove "
        "'rocprof_sys'."
    ),
    "java_jars": "asyncray runs Python only; remove 'java_jars'.",
    "mpi": "asyncray has no MPI integration; remove 'mpi'.",
    "worker_process_setup_hook": (
        "Run the setup code at the top of the task/actor (or in the actor's "
        "__init__) and remove 'worker_process_setup_hook'."
    ),
    "_ray_release": "remove '_ray_release'.",
    "_ray_commit": "remove '_ray_commit'.",
    "_inject_current_ray": "remove '_inject_current_ray'.",
}


def _validate_env_vars(env_vars: Any) -> Dict[str, str]:
    if not isinstance(env_vars, dict):
        raise TypeError(
            "runtime_env['env_vars'] must be of type Dict[str, str], got "
            f"{type(env_vars).__name__}: {_fmt(env_vars)}."
        )
    for key, value in env_vars.items():
        if not isinstance(key, str):
            raise TypeError(
                "runtime_env['env_vars'] must be of type Dict[str, str]; key "
                f"{_fmt(key)} is a {type(key).__name__}, not a str."
            )
        if not isinstance(value, str):
            raise TypeError(
                "runtime_env['env_vars'] must be of type Dict[str, str]; the value "
                f"of {key!r} is {_fmt(value)} ({type(value).__name__}), not a str. "
                f"Tip: use str(...), e.g. {{{key!r}: {str(value)!r}}}."
            )
    return dict(env_vars)


def _validate_working_dir(working_dir: Any) -> str:
    if isinstance(working_dir, os.PathLike):
        working_dir = os.fspath(working_dir)
    if not isinstance(working_dir, str):
        raise TypeError(
            "runtime_env['working_dir'] must be a str path to a local directory, got "
            f"{type(working_dir).__name__}: {_fmt(working_dir)}."
        )
    if "://" in working_dir:
        raise ValueError(
            f"runtime_env['working_dir']={working_dir!r} is a remote URI, which "
            "asyncray does not support yet. Download and unpack it, then pass the "
            "local directory."
        )
    if not os.path.exists(working_dir):
        raise ValueError(
            f"runtime_env['working_dir']={working_dir!r} does not exist. Pass an "
            "existing local directory (relative paths are resolved against the "
            f"current directory {os.getcwd()!r})."
        )
    if not os.path.isdir(working_dir):
        raise ValueError(
            f"runtime_env['working_dir']={working_dir!r} is not a directory (zip "
            "files are not supported by asyncray yet). Pass an existing local "
            "directory."
        )
    return os.path.abspath(working_dir)


def validate_runtime_env(env: Any) -> Optional[Dict[str, Any]]:
    """Validate a runtime_env and return its normalized copy.

    None -> None; {} -> {}.  Supported keys: ``env_vars`` (dict str -> str)
    and ``working_dir`` (existing local directory; returned as an absolute
    path).  Keys whose value is None are dropped.  Other keys Ray knows
    (pip, conda, uv, container, image_uri, py_modules, excludes, config,
    nsight, ...) raise ValueError saying they are not supported yet and what
    to do instead; unknown keys raise ValueError too.
    """
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(
            "runtime_env must be a dict (or None), got "
            f"{type(env).__name__}: {_fmt(env)}."
        )
    normalized: Dict[str, Any] = {}
    for key, value in env.items():
        if key in _UNSUPPORTED_RUNTIME_ENV_KEYS:
            raise ValueError(
                f"runtime_env key {key!r} is not supported by asyncray yet. "
                f"{_UNSUPPORTED_RUNTIME_ENV_KEYS[key]} Supported keys: "
                f"{list(_SUPPORTED_RUNTIME_ENV_KEYS)}."
            )
        if key not in _SUPPORTED_RUNTIME_ENV_KEYS:
            raise ValueError(
                f"Unknown runtime_env key {_fmt(key)}. asyncray supports "
                f"{list(_SUPPORTED_RUNTIME_ENV_KEYS)}; check the spelling."
            )
        if value is None:
            continue
        if key == "env_vars":
            normalized[key] = _validate_env_vars(value)
        else:
            normalized[key] = _validate_working_dir(value)
    return normalized
