"""Public exception types of asyncray (``ray.exceptions`` compatible).

This module owns every exception class a Ray Core program can see or catch.
Names, base classes and constructor signatures follow Ray 2.x
(``python/ray/exceptions.py``) so that ``except ray.exceptions.X`` works
unchanged with ``import asyncray as ray``.  It imports nothing from asyncray
and nothing outside the standard library (``cloudpickle`` is used lazily if
installed, only to check that a task's exception can be shipped).

Hierarchy::

    Exception
    └── RayError
        ├── CrossLanguageError
        ├── TaskCancelledError
        ├── RayTaskError                      (+ dynamic RayTaskError(<Cause>))
        ├── LocalRayletDiedError
        ├── WorkerCrashedError
        ├── RayActorError
        │   ├── ActorDiedError
        │   └── ActorUnavailableError
        ├── RaySystemError
        │   └── RayChannelError
        │       └── RayChannelTimeoutError    (also TimeoutError)
        ├── UserCodeException
        ├── ObjectStoreFullError
        ├── OutOfDiskError
        ├── OutOfMemoryError
        ├── NodeDiedError
        ├── ObjectLostError
        │   ├── ObjectFetchTimedOutError
        │   ├── ReferenceCountingAssertionError (also AssertionError)
        │   ├── ObjectFreedError
        │   ├── OwnerDiedError
        │   ├── ObjectReconstructionFailedError
        │   ├── ObjectReconstructionFailedMaxAttemptsExceededError
        │   └── ObjectReconstructionFailedLineageEvictedError
        ├── RpcError
        ├── GetTimeoutError                   (also TimeoutError)
        ├── PlasmaObjectNotAvailable
        ├── AsyncioActorExit
        ├── RuntimeEnvSetupError
        ├── TaskPlacementGroupRemoved
        ├── ActorPlacementGroupRemoved
        ├── PendingCallsLimitExceeded
        ├── TaskUnschedulableError
        ├── ActorUnschedulableError
        ├── ObjectRefStreamEndOfStreamError
        ├── UnserializableException
        └── AuthenticationError

Pickling: every ``RayError`` pickles through ``RayError.__reduce__``, which
rebuilds the instance from ``args`` and ``__dict__`` without calling
``__init__`` (so subclasses with any constructor signature round-trip).
The dual class made by ``RayTaskError.as_instanceof_cause()`` is created at
run time and cannot be looked up by name, so it pickles as "the plain
RayTaskError, then ``as_instanceof_cause()`` again".
"""

from __future__ import annotations

import logging
import os
import pickle
import types
import weakref
from typing import Any, Mapping, Optional, Union

logger = logging.getLogger(__name__)

__all__ = [
    "RayError",
    "CrossLanguageError",
    "TaskCancelledError",
    "RayTaskError",
    "LocalRayletDiedError",
    "WorkerCrashedError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "RaySystemError",
    "RayChannelError",
    "RayChannelTimeoutError",
    "UserCodeException",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "NodeDiedError",
    "ObjectLostError",
    "ObjectFetchTimedOutError",
    "ReferenceCountingAssertionError",
    "ObjectFreedError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError",
    "RpcError",
    "GetTimeoutError",
    "PlasmaObjectNotAvailable",
    "AsyncioActorExit",
    "RuntimeEnvSetupError",
    "TaskPlacementGroupRemoved",
    "ActorPlacementGroupRemoved",
    "PendingCallsLimitExceeded",
    "TaskUnschedulableError",
    "ActorUnschedulableError",
    "ObjectRefStreamEndOfStreamError",
    "UnserializableException",
    "AuthenticationError",
    "RAY_EXCEPTION_TYPES",
]

# Ray joins call-site frames with this delimiter; ObjectLostError expands it.
CALL_STACK_LINE_DELIMITER = " | "

# Traceback frames from these paths are runtime plumbing, not user code; they
# are hidden from RayTaskError's string form (Ray hides ray/_private/ etc.).
_INTERNAL_FRAME_MARKERS = (
    "/asyncray/_private/",
    "\\asyncray\\_private\\",
)


def _restore_ray_error(cls: type, args: tuple, state: Optional[dict]) -> BaseException:
    """Unpickle helper: rebuild ``cls`` from args and __dict__, skipping __init__."""
    obj = cls.__new__(cls, *args)
    obj.args = args
    if state:
        obj.__dict__.update(state)
    return obj


class RayError(Exception):
    """Super class of all asyncray (Ray) exception types."""

    def __reduce__(self):
        state = dict(self.__dict__) if self.__dict__ else None
        return (_restore_ray_error, (type(self), tuple(self.args), state))


class CrossLanguageError(RayError):
    """Raised from another language.

    ``ray_exception`` is either an object with ``language`` and
    ``formatted_exception_string`` attributes (Ray's protobuf message) or a
    plain message string.  asyncray only runs Python, so it never raises this
    itself; the class exists so ``except`` clauses keep working.
    """

    def __init__(self, ray_exception: Any = None):
        self.ray_exception_language = getattr(ray_exception, "language", None)
        formatted = getattr(ray_exception, "formatted_exception_string", None)
        if formatted is None:
            formatted = "" if ray_exception is None else str(ray_exception)
        self.formatted_exception_string = formatted
        super().__init__(ray_exception)

    def __str__(self) -> str:
        language = self.ray_exception_language or "another language"
        return f"An exception raised from {language}:\n{self.formatted_exception_string}"


class TaskCancelledError(RayError):
    """Raised when this task is cancelled.

    Args:
        task_id: The TaskID (or its hex string) of the task that was directly
            cancelled.
        error_message: Optional detail about why it was cancelled.
    """

    def __init__(self, task_id: Any = None, error_message: Optional[str] = None):
        self.task_id = task_id
        self.error_message = error_message
        super().__init__(task_id, error_message)

    def __str__(self) -> str:
        if self.task_id is not None:
            msg = f"Task: {self.task_id} was cancelled."
        else:
            msg = "This task or one of its dependencies was cancelled (ray.cancel())."
        if self.error_message:
            msg += " " + self.error_message
        return msg


# ---------------------------------------------------------------------------
# RayTaskError and its dynamic dual classes
# ---------------------------------------------------------------------------


def _check_picklable(obj: Any) -> Optional[Exception]:
    """Return the error raised when pickling ``obj`` (cloudpickle if present)."""
    try:
        import cloudpickle as _cp  # noqa: PLC0415 - optional dependency

        dumps = _cp.dumps
    except Exception:  # pragma: no cover - cloudpickle missing
        dumps = pickle.dumps
    try:
        dumps(obj)
    except Exception as e:  # PicklingError, TypeError, AttributeError, ...
        return e
    return None


class RayTaskError(RayError):
    """Indicates that a task threw an exception during execution.

    If a task throws an exception during execution, a RayTaskError is stored
    for each of the task's outputs.  ``ray.get`` raises
    ``error.as_instanceof_cause()``, an instance of a class deriving from both
    RayTaskError and the original exception's class, so both
    ``except RayTaskError`` and ``except <OriginalError>`` catch it.

    Attributes:
        function_name: Name of the remote function or actor method.
        traceback_str: The formatted remote traceback.
        cause: The original exception object (replaced by a RayError that
            explains why if the original exception could not be pickled).
        proctitle, pid, ip: Where the task ran.
        actor_repr: ``repr()`` of the actor, for actor tasks.
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException,
        proctitle: Optional[str] = None,
        pid: Optional[int] = None,
        ip: Optional[str] = None,
        actor_repr: Optional[str] = None,
        actor_id: Optional[str] = None,
    ):
        self.function_name = function_name
        self.traceback_str = "" if traceback_str is None else str(traceback_str)
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid or os.getpid()
        self.ip = ip or "127.0.0.1"
        self.actor_repr = actor_repr
        self._actor_id = actor_id
        self.cause = cause

        if cause is not None:
            err = _check_picklable(cause)
            if err is not None:
                err_msg = (
                    f"The original cause of the RayTaskError ({cause.__class__}) "
                    f"isn't serializable: {err}. Overwriting the cause to a RayError. "
                    "Tip: keep exception attributes picklable (no locks, sockets, "
                    "open files) or define __reduce__ on the exception class."
                )
                logger.warning(err_msg)
                self.cause = RayError(err_msg)

        # BaseException's pickling and repr() use self.args; keep them the
        # constructor arguments so RayTaskError(*e.args) rebuilds an equal error.
        self.args = (
            function_name,
            self.traceback_str,
            self.cause,
            proctitle,
            pid,
            ip,
            actor_repr,
            actor_id,
        )

    @property
    def actor_id(self) -> Optional[str]:
        return self._actor_id

    def _plain_args(self) -> tuple:
        return (
            self.function_name,
            self.traceback_str,
            self.cause,
            self.proctitle,
            self.pid,
            self.ip,
            self.actor_repr,
            self._actor_id,
        )

    def make_dual_exception_type(self) -> type:
        """Make a type inheriting from RayTaskError and ``type(self.cause)``.

        Raises TypeError (or whatever the cause class raises on subclassing)
        if the cause class can't be subclassed.
        """
        return _dual_exception_type(type(self.cause))

    def as_instanceof_cause(self) -> "RayTaskError":
        """Return an exception that is also an instance of the cause's class.

        The returned exception inherits from both RayTaskError and the cause's
        class, has ``.cause`` set to the original exception, delegates unknown
        attributes to it, and its ``str()`` is the remote traceback.  If the
        cause class can't be subclassed (final, incompatible instance layout,
        custom metaclass that refuses, ...) this logs a warning and returns
        ``self``; use ``.cause`` to reach the user exception then.
        """
        if self.cause is None:
            return self
        cause_cls = type(self.cause)
        if issubclass(RayTaskError, cause_cls):
            return self  # already an instance of the cause's class
        try:
            dual_cls = self.make_dual_exception_type()
            return dual_cls(self)
        except Exception as e:
            logger.warning(
                "User exception type %s in RayTaskError can't be subclassed! This "
                "exception is raised as RayTaskError only. You can use "
                "`ray_task_error.cause` to access the user exception. Failure in "
                "subclassing: %s",
                cause_cls,
                e,
            )
            return self

    def __str__(self) -> str:
        return _format_task_error(self)


def _format_task_error(err: RayTaskError) -> str:
    """Format a RayTaskError: header line + remote traceback minus internals."""
    lines = err.traceback_str.strip().split("\n") if err.traceback_str else []
    out = []
    header = f"{err.proctitle}() (pid={err.pid}, ip={err.ip}"
    if err.actor_repr:
        header += f", actor_id={err._actor_id}, repr={err.actor_repr})"
    else:
        header += ")"
    saw_header = False
    skip_code_line = False
    for i, line in enumerate(lines):
        if line.startswith("Traceback "):
            out.append(header)
            saw_header = True
            skip_code_line = False
        elif line.startswith("  File ") and any(m in line for m in _INTERNAL_FRAME_MARKERS):
            # Drop the internal frame and, if present, its indented code line.
            skip_code_line = i + 1 < len(lines) and lines[i + 1].startswith("    ")
        elif skip_code_line:
            skip_code_line = False
        else:
            out.append(line)
    if not saw_header:
        out.insert(0, header)
        if not lines and err.cause is not None:
            out.append(f"{type(err.cause).__name__}: {err.cause}")
    return "\n".join(out)


# Dual classes are cached per cause class.  The cache holds the dual class
# weakly, so an entry (and the cause class it pins) goes away once no
# instance of the dual class is alive and the class itself is collected.
_DUAL_TYPES: "weakref.WeakValueDictionary[type, type]" = weakref.WeakValueDictionary()

# Attributes every exception has; never copied from the cause to the dual.
_SKIP_COPY_ATTRS = frozenset(
    {"args", "with_traceback", "add_note"}
)


def _copy_native_fields(dst: BaseException, cause: BaseException) -> None:
    """Copy C-level/slot fields (OSError.errno, StopIteration.value, ...).

    The dual instance never runs the cause class's __init__, and such fields
    are real descriptors on the class, so __getattr__ delegation never sees
    them; copy their values explicitly.
    """
    for klass in type(cause).__mro__:
        if klass in (BaseException, object):
            continue
        for attr, desc in vars(klass).items():
            if attr.startswith("__") or attr in _SKIP_COPY_ATTRS:
                continue
            if isinstance(desc, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                try:
                    setattr(dst, attr, getattr(cause, attr))
                except Exception:
                    pass


def _rebuild_dual(plain_args: tuple) -> BaseException:
    """Unpickle helper for dual classes: RayTaskError(*args).as_instanceof_cause()."""
    return RayTaskError(*plain_args).as_instanceof_cause()


def _dual_exception_type(cause_cls: type) -> type:
    cached = _DUAL_TYPES.get(cause_cls)
    if cached is not None:
        return cached

    if issubclass(cause_cls, RayTaskError):
        # The cause is itself a (dual) RayTaskError, e.g. a nested ray.get()
        # failed inside the task.  Listing RayTaskError first would be an MRO
        # conflict; the cause class already derives from it.
        bases: tuple = (cause_cls,)
    else:
        bases = (RayTaskError, cause_cls)

    def __init__(self, task_error: RayTaskError):  # noqa: N807
        # Copy the task error's fields; don't run the cause class's __init__.
        self.__dict__.update(task_error.__dict__)
        self.cause = task_error.cause
        self._error_msg = str(task_error)
        _copy_native_fields(self, task_error.cause)
        try:
            self.args = tuple(task_error.cause.args)
        except Exception:
            self.args = (task_error.cause,)

    def __getattr__(self, name: str):  # noqa: N807
        # Only called for attributes not found normally: delegate to the cause
        # (e.g. a custom exception's own fields).  Guard against recursion
        # while the instance is half-built (unpickling, copy).
        if name.startswith("__") or "cause" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["cause"], name)

    def __str__(self) -> str:  # noqa: N807
        msg = self.__dict__.get("_error_msg")
        return msg if msg is not None else _format_task_error(self)

    def __reduce__(self):  # noqa: N807
        return (_rebuild_dual, (RayTaskError._plain_args(self),))

    name = f"RayTaskError({cause_cls.__name__})"
    namespace = {
        "__init__": __init__,
        "__getattr__": __getattr__,
        "__str__": __str__,
        "__reduce__": __reduce__,
        "__module__": RayTaskError.__module__,
        "__qualname__": name,
        "__doc__": f"RayTaskError that is also an instance of {cause_cls.__qualname__}.",
    }
    dual = type(cause_cls)(name, bases, namespace)
    _DUAL_TYPES[cause_cls] = dual
    return dual


class LocalRayletDiedError(RayError):
    """Indicates that the task's local raylet (node manager) died."""

    def __str__(self) -> str:
        return (
            "The task's local raylet (node manager) died. "
            "Tip: check the node manager's log for the cause; the node is gone, "
            "so restart the cluster or the node."
        )


class WorkerCrashedError(RayError):
    """Indicates that the worker died unexpectedly while executing a task."""

    def __str__(self) -> str:
        detail = super().__str__()
        msg = (
            "The worker died unexpectedly while executing this task. "
            "Tip: the process may have been killed (OOM killer, a signal, "
            "os._exit or a crash in native code); check the worker logs. "
            "Set max_retries=<n> on the task to retry it automatically."
        )
        return f"{msg}\n{detail}" if detail else msg


# ---------------------------------------------------------------------------
# Actor errors
# ---------------------------------------------------------------------------


class RayActorError(RayError):
    """Indicates that the actor has an outage before finishing a task.

    This can happen because the actor process is dead, or is unavailable for
    the moment.  Ray raises the subclasses ``ActorDiedError`` and
    ``ActorUnavailableError`` respectively.
    """

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(
        self,
        actor_id: Optional[str] = None,
        error_msg: str = BASE_ERROR_MSG,
        actor_init_failed: bool = False,
        preempted: bool = False,
    ):
        #: The actor ID in hex string.
        self.actor_id = actor_id
        #: The full error message.
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted
        super().__init__(actor_id, error_msg, actor_init_failed, preempted)

    def __str__(self) -> str:
        return self.error_msg

    @property
    def preempted(self) -> bool:
        """Whether the actor died because its node was preempted."""
        return self._preempted

    @property
    def actor_init_failed(self) -> bool:
        """Whether the actor failed in the middle of ``__init__``."""
        return self._actor_init_failed


def _ctx_get(ctx: Any, field: str, default: Any = None) -> Any:
    if isinstance(ctx, Mapping):
        return ctx.get(field, default)
    return getattr(ctx, field, default)


class ActorDiedError(RayActorError):
    """Indicates that the actor died unexpectedly before finishing a task.

    This happens either because the actor process dies while executing a
    task, or because a task is submitted to a dead actor.

    Args:
        cause: ``RayTaskError`` means the actor died because ``__init__``
            raised; a mapping (or object) with the fields of Ray's
            ``ActorDiedErrorContext`` (class_name, actor_id, pid, name,
            ray_namespace, node_ip_address, error_message, never_started,
            preempted) means a system-level death; a string is used as the
            extra error message; None means the cause is unknown.
    """

    BASE_ERROR_MSG = "The actor died unexpectedly before finishing this task."

    def __init__(self, cause: Union[RayTaskError, Mapping, str, None] = None):
        actor_id = None
        error_msg = ActorDiedError.BASE_ERROR_MSG
        actor_init_failed = False
        preempted = False

        if not cause:
            pass
        elif isinstance(cause, RayTaskError):
            actor_init_failed = True
            actor_id = cause._actor_id
            error_msg = (
                "The actor died because of an error raised in its creation task, "
                f"{cause.__str__()}"
            )
        elif isinstance(cause, str):
            error_msg = f"{ActorDiedError.BASE_ERROR_MSG}\n{cause}"
        else:
            lines = [ActorDiedError.BASE_ERROR_MSG]
            actor_id = _ctx_get(cause, "actor_id")
            if isinstance(actor_id, (bytes, bytearray)):
                actor_id = bytes(actor_id).hex()
            lines.append(f"\tclass_name: {_ctx_get(cause, 'class_name', '')}")
            lines.append(f"\tactor_id: {actor_id}")
            if _ctx_get(cause, "pid"):
                lines.append(f"\tpid: {_ctx_get(cause, 'pid')}")
            if _ctx_get(cause, "name"):
                lines.append(f"\tname: {_ctx_get(cause, 'name')}")
            if _ctx_get(cause, "ray_namespace"):
                lines.append(f"\tnamespace: {_ctx_get(cause, 'ray_namespace')}")
            if _ctx_get(cause, "node_ip_address"):
                lines.append(f"\tip: {_ctx_get(cause, 'node_ip_address')}")
            if _ctx_get(cause, "error_message"):
                lines.append(str(_ctx_get(cause, "error_message")))
            if _ctx_get(cause, "never_started"):
                lines.append(
                    "The actor never ran - it was cancelled before it started running."
                )
            preempted = bool(_ctx_get(cause, "preempted", False))
            error_msg = "\n".join(lines)
        super().__init__(actor_id, error_msg, actor_init_failed, preempted)
        self.args = (cause,)

    @staticmethod
    def from_task_error(task_error: RayTaskError) -> "ActorDiedError":
        return ActorDiedError(task_error)


class ActorUnavailableError(RayActorError):
    """Raised when the actor is temporarily unavailable but may be available later."""

    def __init__(self, error_message: str, actor_id: Union[bytes, str, None] = None):
        if isinstance(actor_id, (bytes, bytearray)):
            actor_id_hex: Optional[str] = bytes(actor_id).hex()
        else:
            actor_id_hex = actor_id
        error_msg = (
            f"The actor {actor_id_hex} is unavailable: {error_message}. The task may "
            "or may not have been executed on the actor. Tip: retry the call, or "
            "set max_task_retries on the actor to retry automatically."
        )
        super().__init__(actor_id_hex, error_msg, False, False)
        self.error_message = error_message
        self.args = (error_message, actor_id)


# ---------------------------------------------------------------------------
# System errors
# ---------------------------------------------------------------------------


class RaySystemError(RayError):
    """Indicates that asyncray encountered a system error.

    This exception can be thrown when the node manager is killed.
    """

    def __init__(self, client_exc: Any, traceback_str: Optional[str] = None):
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        super().__init__(client_exc, traceback_str)

    def __str__(self) -> str:
        error_msg = f"System error: {self.client_exc}"
        if self.traceback_str:
            error_msg += f"\ntraceback: {self.traceback_str}"
        return error_msg


class RayChannelError(RaySystemError):
    """A system error related to compiled-graph channels (ray.experimental.channel)."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """Raised when a compiled-graph channel operation times out."""


class UserCodeException(RayError):
    """An exception occurred while executing user code.

    Used to wrap user exceptions from a remote task or actor; the
    ``retry_exceptions`` option still looks at the underlying cause.
    """


class ObjectStoreFullError(RayError):
    """Indicates that the object store is full.

    Raised if storing an object fails because the object store is full even
    after multiple retries.
    """

    def __str__(self) -> str:
        return super().__str__() + (
            "\nThe local object store is full of objects that are still in scope "
            "and cannot be evicted. Tip: drop references to objects you no longer "
            "need (del the ObjectRefs) or give the object store more memory."
        )


class OutOfDiskError(RayError):
    """Indicates that the local disk is full.

    Raised if storing an object fails because both the object store and the
    disk used for spilling are full.
    """

    def __str__(self) -> str:
        return super().__str__() + (
            "\nThe object cannot be created because the local object store is full "
            "and the local disk's utilization is over capacity (95% by default). "
            "Tip: use `df` on this node to check disk usage and free some space."
        )


class OutOfMemoryError(RayError):
    """Indicates that the node is running out of memory and is close to full.

    Raised if the node is low on memory and tasks or actors are being killed
    to free memory.
    """

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class NodeDiedError(RayError):
    """Indicates that the node is either dead or unreachable."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------
# Object errors
# ---------------------------------------------------------------------------


class ObjectLostError(RayError):
    """Indicates that the object is lost from distributed memory.

    Args:
        object_ref_hex: Hex ID of the object.
        owner_address: Address of the object's owner (string), if known.
        call_site: Where the ObjectRef was created, if recorded.
    """

    def __init__(
        self,
        object_ref_hex: str,
        owner_address: Any = None,
        call_site: Optional[str] = None,
    ):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = (call_site or "").replace(CALL_STACK_LINE_DELIMITER, "\n  ")
        super().__init__(object_ref_hex, owner_address, call_site)

    def _base_str(self) -> str:
        msg = f"Failed to retrieve object {self.object_ref_hex}."
        if self.call_site:
            msg += f" The ObjectRef was created at: {self.call_site}"
        return msg

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + f"All copies of {self.object_ref_hex} have been lost due to node "
            "failure. Check the cluster logs for more information about the failure."
        )


class ObjectFetchTimedOutError(ObjectLostError):
    """Indicates that an object fetch timed out."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + f"Fetch for object {self.object_ref_hex} timed out because no "
            "locations were found for the object. This may indicate a system-level bug."
        )


class RpcError(RayError):
    """Indicates an error in the underlying RPC system."""

    def __init__(self, message: str, rpc_code: Optional[int] = None):
        self.message = message
        self.rpc_code = rpc_code
        super().__init__(message, rpc_code)

    def __str__(self) -> str:
        return self.message


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """An object was deleted while there was still a reference to it."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + "The object has already been deleted by the reference counting "
            "protocol. This should not happen; please report it as a bug."
        )


class ObjectFreedError(ObjectLostError):
    """Indicates that an object was manually freed by the application."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + "The object was manually freed using the internal `free` call. "
            "Please ensure that `free` is only called once the object is no "
            "longer needed."
        )


class OwnerDiedError(ObjectLostError):
    """The owner of the object died while there is still a reference to it."""

    def __str__(self) -> str:
        where = f" (owner: {self.owner_address})" if self.owner_address else ""
        return (
            self._base_str()
            + "\n\n"
            + "The object's owner has exited. This is the Python worker that first "
            f"created the ObjectRef via `.remote()` or `ray.put()`{where}. Check the "
            "logs of that worker for more information about its failure. Tip: keep "
            "the process that created an object alive while others still use it."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """Indicates that the object cannot be reconstructed."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + "The object cannot be reconstructed because it was created by an "
            "actor, ray.put() call, or its ObjectRef was created by a different worker."
        )


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """The object cannot be reconstructed: max task retries exceeded."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + "The object cannot be reconstructed because the maximum number of "
            "task retries has been exceeded. To prevent this error, set "
            "`@ray.remote(max_retries=<num retries>)` (default 3)."
        )


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """The object cannot be reconstructed: its lineage was evicted."""

    def __str__(self) -> str:
        return (
            self._base_str()
            + "\n\n"
            + "The object cannot be reconstructed because its lineage has been "
            "evicted to reduce memory pressure. To prevent this error, keep fewer "
            "task outputs alive at once or re-create the object explicitly."
        )


# ---------------------------------------------------------------------------
# Misc errors
# ---------------------------------------------------------------------------


class GetTimeoutError(RayError, TimeoutError):
    """Indicates that a call to ``ray.get`` (or similar) timed out."""

    def __str__(self) -> str:
        msg = super().__str__()
        return msg or (
            "Get timed out: some object(s) not ready. Tip: pass a larger "
            "`timeout=` or use `ray.wait()` to poll for ready objects."
        )


class PlasmaObjectNotAvailable(RayError):
    """Called when an object was not available within the given timeout."""


class AsyncioActorExit(RayError):
    """Raised when an asyncio actor intentionally exits via exit_actor()."""


class RuntimeEnvSetupError(RayError):
    """Raised when a runtime environment fails to be set up.

    Args:
        error_message: Why runtime env setup failed.
    """

    def __init__(self, error_message: Optional[str] = None):
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        msgs = ["Failed to set up runtime environment."]
        if self.error_message:
            msgs.append(self.error_message)
        return "\n".join(msgs)


class TaskPlacementGroupRemoved(RayError):
    """Raised when the task's placement group was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    """Raised when the actor's placement group was removed."""

    def __str__(self) -> str:
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    """Raised when the pending actor calls exceed the ``max_pending_calls`` option.

    This probably happens because the caller calls the callee too frequently.
    """

    def __str__(self) -> str:
        msg = super().__str__()
        return msg or (
            "The number of pending calls on this actor handle exceeded "
            "max_pending_calls. Tip: wait for results (ray.get / ray.wait) before "
            "submitting more calls, or raise max_pending_calls (-1 = unlimited)."
        )


class TaskUnschedulableError(RayError):
    """Raised when the task cannot be scheduled.

    One example is that the node specified through
    NodeAffinitySchedulingStrategy is dead.
    """

    def __init__(self, error_message: str):
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        return f"The task is not schedulable: {self.error_message}"


class ActorUnschedulableError(RayError):
    """Raised when the actor cannot be scheduled.

    One example is that the node specified through
    NodeAffinitySchedulingStrategy is dead.
    """

    def __init__(self, error_message: str):
        self.error_message = error_message
        super().__init__(error_message)

    def __str__(self) -> str:
        return f"The actor is not schedulable: {self.error_message}"


class ObjectRefStreamEndOfStreamError(RayError):
    """Raised by streaming generator tasks when there are no more ObjectRefs."""


class UnserializableException(RayError):
    """Raised when a serialized exception could not be deserialized.

    Args:
        original_stack_trace: The formatted original exception, which is
            still shown so the failure is not lost.
    """

    def __init__(self, original_stack_trace: str):
        self._original_stack_trace = original_stack_trace
        super().__init__(original_stack_trace)

    @property
    def original_stack_trace(self) -> str:
        return self._original_stack_trace

    def __str__(self) -> str:
        return (
            "Failed to deserialize exception. Tip: make the exception class "
            "importable where it is caught and keep its attributes picklable "
            "(or define __reduce__ on it).\n"
            "Original exception:\n"
            f"{self._original_stack_trace}"
        )


class AuthenticationError(RayError):
    """An authentication error occurred between a client and the cluster.

    Most commonly caused by a missing or mismatching token on the client and
    the cluster.
    """

    def __init__(self, message: str):
        self.message = message
        self.__suppress_context__ = True
        super().__init__(message)

    def __str__(self) -> str:
        return (
            f"{self.message}. Tip: make sure the client and the cluster use the "
            "same authentication token."
        )


RAY_EXCEPTION_TYPES = [
    PlasmaObjectNotAvailable,
    RayError,
    RayTaskError,
    WorkerCrashedError,
    RayActorError,
    ObjectStoreFullError,
    ObjectLostError,
    ObjectFetchTimedOutError,
    ReferenceCountingAssertionError,
    ObjectReconstructionFailedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
    ObjectReconstructionFailedLineageEvictedError,
    OwnerDiedError,
    GetTimeoutError,
    AsyncioActorExit,
    RuntimeEnvSetupError,
    TaskPlacementGroupRemoved,
    ActorPlacementGroupRemoved,
    PendingCallsLimitExceeded,
    LocalRayletDiedError,
    TaskUnschedulableError,
    ActorDiedError,
    ActorUnschedulableError,
    ActorUnavailableError,
    RayChannelError,
    RayChannelTimeoutError,
    UnserializableException,
    AuthenticationError,
    ObjectFreedError,
    NodeDiedError,
    OutOfMemoryError,
    OutOfDiskError,
    CrossLanguageError,
    RaySystemError,
    TaskCancelledError,
]
