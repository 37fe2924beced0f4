"""Unit tests for asyncray.exceptions: hierarchy, messages, dual classes, pickling."""

from __future__ import annotations

import ast
import copy
import logging
import pickle
import threading
import traceback

import cloudpickle
import pytest

from asyncray import exceptions as rex
from asyncray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayError,
    RayTaskError,
)

PICKLERS = [
    pytest.param((pickle.dumps, pickle.loads), id="pickle"),
    pytest.param((cloudpickle.dumps, cloudpickle.loads), id="cloudpickle"),
]


def _roundtrip(obj, pickler):
    dumps, loads = pickler
    return loads(dumps(obj))


def _raise_and_capture(exc: BaseException):
    try:
        raise exc
    except BaseException as e:  # noqa: BLE001
        return e, traceback.format_exc()


def _task_error(exc: BaseException, function_name="f", **kwargs) -> RayTaskError:
    cause, tb = _raise_and_capture(exc)
    return RayTaskError(function_name, tb, cause, **kwargs)


# ---------------------------------------------------------------------------
# Hierarchy
# ---------------------------------------------------------------------------

HIERARCHY = {
    "RayError": (Exception,),
    "CrossLanguageError": ("RayError",),
    "TaskCancelledError": ("RayError",),
    "RayTaskError": ("RayError",),
    "LocalRayletDiedError": ("RayError",),
    "WorkerCrashedError": ("RayError",),
    "RayActorError": ("RayError",),
    "ActorDiedError": ("RayActorError",),
    "ActorUnavailableError": ("RayActorError",),
    "RaySystemError": ("RayError",),
    "RayChannelError": ("RaySystemError",),
    "RayChannelTimeoutError": ("RayChannelError", TimeoutError),
    "UserCodeException": ("RayError",),
    "ObjectStoreFullError": ("RayError",),
    "OutOfDiskError": ("RayError",),
    "OutOfMemoryError": ("RayError",),
    "NodeDiedError": ("RayError",),
    "ObjectLostError": ("RayError",),
    "ObjectFetchTimedOutError": ("ObjectLostError",),
    "ReferenceCountingAssertionError": ("ObjectLostError", AssertionError),
    "ObjectFreedError": ("ObjectLostError",),
    "OwnerDiedError": ("ObjectLostError",),
    "ObjectReconstructionFailedError": ("ObjectLostError",),
    "ObjectReconstructionFailedMaxAttemptsExceededError": ("ObjectLostError",),
    "ObjectReconstructionFailedLineageEvictedError": ("ObjectLostError",),
    "RpcError": ("RayError",),
    "GetTimeoutError": ("RayError", TimeoutError),
    "PlasmaObjectNotAvailable": ("RayError",),
    "AsyncioActorExit": ("RayError",),
    "RuntimeEnvSetupError": ("RayError",),
    "TaskPlacementGroupRemoved": ("RayError",),
    "ActorPlacementGroupRemoved": ("RayError",),
    "PendingCallsLimitExceeded": ("RayError",),
    "TaskUnschedulableError": ("RayError",),
    "ActorUnschedulableError": ("RayError",),
    "ObjectRefStreamEndOfStreamError": ("RayError",),
    "UnserializableException": ("RayError",),
    "AuthenticationError": ("RayError",),
}


@pytest.mark.parametrize("name", sorted(HIERARCHY))
def test_direct_bases_match_ray(name):
    cls = getattr(rex, name)
    expected = tuple(getattr(rex, b) if isinstance(b, str) else b for b in HIERARCHY[name])
    assert cls.__bases__ == expected
    assert name in rex.__all__
    assert cls.__module__ == rex.__name__


def test_every_public_exception_is_listed_and_documented():
    exported = {n for n in rex.__all__ if isinstance(getattr(rex, n), type)}
    assert exported == set(HIERARCHY)
    for name in HIERARCHY:
        assert name in rex.__doc__, f"{name} missing from the module docstring tree"
        assert getattr(rex, name).__doc__
    for cls in rex.RAY_EXCEPTION_TYPES:
        assert issubclass(cls, RayError)


def test_module_does_not_import_asyncray_package():
    tree = ast.parse(open(rex.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "logging", "os", "pickle", "types", "weakref",
                        "typing", "cloudpickle"}


# ---------------------------------------------------------------------------
# Pickle round trip for every exception
# ---------------------------------------------------------------------------


def _samples():
    rte = _task_error(ValueError("boom"))
    return [
        rex.RayError("plain message"),
        rex.CrossLanguageError("java stack"),
        rex.TaskCancelledError("abc123"),
        rex.TaskCancelledError(),
        rex.TaskCancelledError("abc", "cancelled by user"),
        rte,
        rex.LocalRayletDiedError(),
        rex.WorkerCrashedError(),
        rex.RayActorError(),
        rex.RayActorError("a1", "custom message", True, True),
        rex.ActorDiedError(),
        rex.ActorDiedError(rte),
        rex.ActorDiedError({"class_name": "Foo", "actor_id": "ff", "pid": 3}),
        rex.ActorDiedError("killed by ray.kill"),
        rex.ActorUnavailableError("connection lost", b"\x01\x02"),
        rex.ActorUnavailableError("connection lost", None),
        rex.RaySystemError("socket closed", "tb text"),
        rex.RayChannelError("chan"),
        rex.RayChannelTimeoutError("chan timeout"),
        rex.UserCodeException("user"),
        rex.ObjectStoreFullError("store full"),
        rex.OutOfDiskError("disk"),
        rex.OutOfMemoryError("node out of memory"),
        rex.NodeDiedError("node died"),
        rex.ObjectLostError("deadbeef", "owner", "f.py:1 | g.py:2"),
        rex.ObjectFetchTimedOutError("deadbeef", None, ""),
        rex.ReferenceCountingAssertionError("deadbeef", None, ""),
        rex.ObjectFreedError("deadbeef", None, ""),
        rex.OwnerDiedError("deadbeef", "10.0.0.1:1234", ""),
        rex.ObjectReconstructionFailedError("deadbeef", None, ""),
        rex.ObjectReconstructionFailedMaxAttemptsExceededError("deadbeef", None, ""),
        rex.ObjectReconstructionFailedLineageEvictedError("deadbeef", None, ""),
        rex.RpcError("rpc failed", 14),
        rex.GetTimeoutError("Get timed out"),
        rex.GetTimeoutError(),
        rex.PlasmaObjectNotAvailable("na"),
        rex.AsyncioActorExit(),
        rex.RuntimeEnvSetupError("pip failed"),
        rex.RuntimeEnvSetupError(),
        rex.TaskPlacementGroupRemoved(),
        rex.ActorPlacementGroupRemoved(),
        rex.PendingCallsLimitExceeded("too many"),
        rex.PendingCallsLimitExceeded(),
        rex.TaskUnschedulableError("node dead"),
        rex.ActorUnschedulableError("node dead"),
        rex.ObjectRefStreamEndOfStreamError(),
        rex.UnserializableException("Traceback...\nKeyError: 1"),
        rex.AuthenticationError("token mismatch"),
    ]


def _sample_ids():
    return [f"{type(e).__name__}-{i}" for i, e in enumerate(_samples())]


@pytest.mark.parametrize("pickler", PICKLERS)
@pytest.mark.parametrize("index", range(len(_samples())), ids=_sample_ids())
def test_every_exception_pickles(index, pickler):
    original = _samples()[index]
    restored = _roundtrip(original, pickler)
    assert type(restored) is type(original)
    assert str(restored) == str(original)
    assert repr(restored) == repr(original)
    assert len(restored.args) == len(original.args)
    for a, b in zip(restored.args, original.args):
        if isinstance(a, BaseException):
            assert type(a) is type(b) and str(a) == str(b)
        else:
            assert a == b
    # And it can be raised and caught as its own type.
    with pytest.raises(type(original)):
        raise restored


def test_all_samples_cover_every_class():
    covered = {type(e) for e in _samples()}
    assert {getattr(rex, n) for n in HIERARCHY} <= covered


class NoSuperInitError(RayError):
    def __init__(self, a, b):  # never calls super().__init__
        self.a = a
        self.b = b

    def __str__(self):
        return f"{self.a}/{self.b}"


@pytest.mark.parametrize("pickler", PICKLERS)
def test_user_subclass_without_super_init_pickles(pickler):
    restored = _roundtrip(NoSuperInitError(1, [2]), pickler)
    assert type(restored) is NoSuperInitError
    assert (restored.a, restored.b, str(restored)) == (1, [2], "1/[2]")


def test_local_user_subclass_pickles_with_cloudpickle():
    class LocalError(RayError):
        def __init__(self, x):
            self.x = x

    restored = cloudpickle.loads(cloudpickle.dumps(LocalError(3)))
    assert restored.x == 3 and isinstance(restored, RayError)


def test_copy_and_deepcopy_keep_state():
    err = rex.ObjectLostError("ab", "owner", "here")
    for fn in (copy.copy, copy.deepcopy):
        c = fn(err)
        assert type(c) is type(err) and str(c) == str(err) and c.owner_address == "owner"


def test_notes_survive_pickling():
    err = rex.NodeDiedError("gone")
    err.add_note("extra context")
    restored = pickle.loads(pickle.dumps(err))
    assert restored.__notes__ == ["extra context"]


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


def test_messages_explain_and_give_tips():
    assert "Tip" in str(rex.ObjectStoreFullError("x"))
    assert "Tip" in str(rex.OutOfDiskError("x"))
    assert "Tip" in str(rex.GetTimeoutError())
    assert "Tip" in str(rex.PendingCallsLimitExceeded())
    assert "max_retries" in str(rex.WorkerCrashedError())
    assert str(rex.GetTimeoutError("custom")) == "custom"
    assert str(rex.PendingCallsLimitExceeded("custom")) == "custom"
    assert str(rex.TaskUnschedulableError("why")) == "The task is not schedulable: why"
    assert str(rex.ActorUnschedulableError("why")) == "The actor is not schedulable: why"
    assert str(rex.RuntimeEnvSetupError("pip")) == "Failed to set up runtime environment.\npip"
    assert "Task: abc was cancelled." in str(rex.TaskCancelledError("abc"))
    assert "cancelled" in str(rex.TaskCancelledError())
    assert str(rex.RaySystemError("x", "tb")) == "System error: x\ntraceback: tb"
    assert "token mismatch" in str(rex.AuthenticationError("token mismatch"))
    assert "KeyError: 1" in str(rex.UnserializableException("KeyError: 1"))
    assert "An exception raised from" in str(rex.CrossLanguageError("boom"))


def test_object_lost_messages():
    err = rex.ObjectLostError("abcd", None, "a.py:1 | b.py:2")
    assert err.call_site == "a.py:1\n  b.py:2"
    assert "Failed to retrieve object abcd." in str(err)
    assert "a.py:1" in str(err)
    assert "max_retries" in str(rex.ObjectReconstructionFailedMaxAttemptsExceededError("x"))
    assert "owner has exited" in str(rex.OwnerDiedError("x", "10.0.0.1"))
    assert "10.0.0.1" in str(rex.OwnerDiedError("x", "10.0.0.1"))
    assert "timed out" in str(rex.ObjectFetchTimedOutError("x"))
    assert "freed" in str(rex.ObjectFreedError("x"))


def test_timeout_errors_are_builtin_timeouts():
    with pytest.raises(TimeoutError):
        raise GetTimeoutError("t")
    with pytest.raises(TimeoutError):
        raise rex.RayChannelTimeoutError("t")
    with pytest.raises(AssertionError):
        raise rex.ReferenceCountingAssertionError("x")


# ---------------------------------------------------------------------------
# RayTaskError
# ---------------------------------------------------------------------------


def test_task_error_fields():
    err = _task_error(ValueError("bad"), "my_fn", proctitle="ray::my_fn", pid=42, ip="1.2.3.4")
    assert err.function_name == "my_fn"
    assert isinstance(err.cause, ValueError) and str(err.cause) == "bad"
    assert err.pid == 42 and err.ip == "1.2.3.4" and err.proctitle == "ray::my_fn"
    assert "ValueError: bad" in err.traceback_str
    text = str(err)
    assert text.splitlines()[0] == "ray::my_fn() (pid=42, ip=1.2.3.4)"
    assert "ValueError: bad" in text
    assert "Traceback (most recent call last)" not in text


def test_task_error_defaults_pid_and_title():
    err = RayTaskError("g", "Traceback (most recent call last):\nKeyError: 1", KeyError(1))
    assert err.pid > 0 and err.ip
    assert str(err).startswith("ray::g() (pid=")


def test_task_error_header_for_actor():
    err = RayTaskError(
        "A.m", "Traceback (most recent call last):\nX", ValueError(), pid=1, ip="h",
        actor_repr="A(1)", actor_id="abcd",
    )
    assert "actor_id=abcd, repr=A(1))" in str(err).splitlines()[0]
    assert err.actor_id == "abcd"


def test_task_error_hides_internal_frames():
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/site/asyncray/_private/worker/main.py", line 10, in run\n'
        "    result = fn(*args)\n"
        '  File "/home/me/app.py", line 3, in f\n'
        "    1 / 0\n"
        "ZeroDivisionError: division by zero"
    )
    text = str(RayTaskError("f", tb, ZeroDivisionError("division by zero"), pid=1, ip="x"))
    assert "asyncray/_private" not in text
    assert "result = fn(*args)" not in text
    assert 'File "/home/me/app.py", line 3, in f' in text
    assert "    1 / 0" in text
    assert text.endswith("ZeroDivisionError: division by zero")


def test_task_error_without_traceback_text_still_informative():
    err = RayTaskError("f", "", ValueError("v"), pid=1, ip="x")
    assert "ValueError: v" in str(err)


def test_as_instanceof_cause_builtin():
    err = _task_error(ZeroDivisionError("division by zero"))
    dual = err.as_instanceof_cause()
    assert isinstance(dual, ZeroDivisionError)
    assert isinstance(dual, ArithmeticError)
    assert isinstance(dual, RayTaskError)
    assert isinstance(dual, RayError)
    assert type(dual).__name__ == "RayTaskError(ZeroDivisionError)"
    assert dual.cause is err.cause
    assert str(dual) == str(err)
    assert "ZeroDivisionError: division by zero" in str(dual)
    assert dual.function_name == "f" and dual.pid == err.pid
    assert dual.args == ("division by zero",)
    with pytest.raises(ZeroDivisionError):
        raise dual
    with pytest.raises(RayTaskError):
        raise dual


class CustomError(Exception):
    def __init__(self, code, detail="d"):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class CustomChild(CustomError):
    pass


def test_as_instanceof_cause_custom_attributes_delegate():
    dual = _task_error(CustomChild(7, "why")).as_instanceof_cause()
    assert isinstance(dual, CustomChild) and isinstance(dual, CustomError)
    assert dual.code == 7 and dual.detail == "why"
    with pytest.raises(AttributeError):
        dual.does_not_exist  # noqa: B018


def test_as_instanceof_cause_copies_native_fields():
    cause = FileNotFoundError(2, "No such file or directory", "/nope")
    dual = _task_error(cause).as_instanceof_cause()
    assert isinstance(dual, FileNotFoundError) and isinstance(dual, OSError)
    assert (dual.errno, dual.strerror, dual.filename) == (2, "No such file or directory", "/nope")
    stop = _task_error(StopIteration(5)).as_instanceof_cause()
    assert stop.value == 5


def test_dual_class_is_cached_per_cause_class():
    a = _task_error(KeyError("a")).as_instanceof_cause()
    b = _task_error(KeyError("b")).as_instanceof_cause()
    assert type(a) is type(b)
    assert str(a) != str(b)


@pytest.mark.parametrize("pickler", PICKLERS)
def test_dual_pickles(pickler):
    dual = _task_error(CustomError(3, "x"), "fn", pid=9, ip="h").as_instanceof_cause()
    restored = _roundtrip(dual, pickler)
    assert type(restored).__name__ == "RayTaskError(CustomError)"
    assert isinstance(restored, CustomError) and isinstance(restored, RayTaskError)
    assert isinstance(restored.cause, CustomError) and restored.cause.code == 3
    assert restored.code == 3
    assert str(restored) == str(dual)
    assert (restored.function_name, restored.pid, restored.ip) == ("fn", 9, "h")
    with pytest.raises(CustomError):
        raise restored


@pytest.mark.parametrize("pickler", PICKLERS)
def test_plain_task_error_pickles_with_cause(pickler):
    err = _task_error(CustomError(4), "fn", pid=1, ip="h")
    restored = _roundtrip(err, pickler)
    assert type(restored) is RayTaskError
    assert restored.cause.code == 4 and str(restored) == str(err)
    assert isinstance(restored.as_instanceof_cause(), CustomError)


def test_dual_deepcopy():
    dual = _task_error(ValueError("v")).as_instanceof_cause()
    c = copy.deepcopy(dual)
    assert type(c) is type(dual) and str(c) == str(dual) and isinstance(c, ValueError)


def test_nested_task_error_as_cause():
    inner = _task_error(ZeroDivisionError("dz"), "inner").as_instanceof_cause()
    outer = _task_error(inner, "outer").as_instanceof_cause()
    assert isinstance(outer, ZeroDivisionError)
    assert isinstance(outer, RayTaskError)
    assert outer.cause is not None and isinstance(outer.cause, ZeroDivisionError)
    restored = pickle.loads(pickle.dumps(outer))
    assert isinstance(restored, ZeroDivisionError) and str(restored) == str(outer)


def test_ray_error_cause_becomes_dual_too():
    dual = _task_error(RayActorError()).as_instanceof_cause()
    assert isinstance(dual, RayActorError) and isinstance(dual, RayTaskError)


def test_cause_already_satisfied_returns_self():
    for cause in (Exception("e"), RayError("r"), BaseException("b")):
        err = RayTaskError("f", "tb", cause)
        assert err.as_instanceof_cause() is err
    err = RayTaskError("f", "tb", None)
    assert err.as_instanceof_cause() is err


def test_unsubclassable_cause_falls_back(caplog):
    class FinalError(Exception):
        def __init_subclass__(cls, **kwargs):
            raise TypeError("Can't subclass FinalError")

    class NeedsArgs(Exception):
        def __new__(cls, a, b):
            return super().__new__(cls, a, b)

    class Meta(type):
        def __new__(mcs, name, bases, ns, **kw):
            if any(b.__name__ == "RayTaskError" for b in bases):
                raise RuntimeError("no thanks")
            return super().__new__(mcs, name, bases, ns)

    class MetaError(Exception, metaclass=Meta):
        pass

    for cause in (FinalError("f"), NeedsArgs(1, 2), MetaError("m")):
        err = RayTaskError("f", "Traceback (most recent call last):\nX", cause)
        with caplog.at_level(logging.WARNING, logger=rex.__name__):
            result = err.as_instanceof_cause()
        assert result is err
        assert type(result) is RayTaskError
        assert result.cause is cause
        assert "can't be subclassed" in caplog.text
        caplog.clear()


def test_unpicklable_cause_is_replaced(caplog):
    class LockError(Exception):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()

    with caplog.at_level(logging.WARNING, logger=rex.__name__):
        err = _task_error(LockError())
    assert type(err.cause) is RayError
    assert "isn't serializable" in str(err.cause)
    assert "LockError" in str(err.cause)
    restored = pickle.loads(pickle.dumps(err.as_instanceof_cause()))
    assert isinstance(restored, RayTaskError)
    assert "LockError" in str(restored)


def test_task_error_args_rebuild():
    err = _task_error(ValueError("x"), "fn", pid=5, ip="h", actor_repr="A()", actor_id="id")
    again = RayTaskError(*err.args)
    assert str(again) == str(err)


# ---------------------------------------------------------------------------
# Actor errors
# ---------------------------------------------------------------------------


def test_actor_died_from_creation_task_error():
    rte = _task_error(ValueError("init failed"), "A.__init__", actor_id="aid")
    err = ActorDiedError(rte)
    assert err.actor_init_failed
    assert err.actor_id == "aid"
    assert "creation task" in str(err) and "init failed" in str(err)
    assert isinstance(err, RayActorError)
    assert ActorDiedError.from_task_error(rte).actor_init_failed
    restored = pickle.loads(pickle.dumps(err))
    assert restored.actor_init_failed and str(restored) == str(err)


def test_actor_died_from_context():
    ctx = {
        "class_name": "Counter",
        "actor_id": b"\xab\xcd",
        "pid": 123,
        "name": "c",
        "ray_namespace": "ns",
        "node_ip_address": "10.0.0.2",
        "error_message": "The actor was killed by ray.kill().",
        "never_started": True,
        "preempted": True,
    }
    err = ActorDiedError(ctx)
    text = str(err)
    for piece in ("class_name: Counter", "actor_id: abcd", "pid: 123", "name: c",
                  "namespace: ns", "ip: 10.0.0.2", "ray.kill()", "never ran"):
        assert piece in text
    assert err.actor_id == "abcd" and err.preempted and not err.actor_init_failed


def test_actor_died_default_and_base():
    assert str(ActorDiedError()) == ActorDiedError.BASE_ERROR_MSG
    assert str(RayActorError()) == RayActorError.BASE_ERROR_MSG
    err = RayActorError("id1", "msg", True, False)
    assert (err.actor_id, str(err), err.actor_init_failed, err.preempted) == (
        "id1", "msg", True, False)


def test_actor_unavailable():
    err = ActorUnavailableError("connection reset", b"\x00\xff")
    assert err.actor_id == "00ff"
    assert "The actor 00ff is unavailable: connection reset" in str(err)
    assert isinstance(err, RayActorError)
    assert ActorUnavailableError("x", "hexid").actor_id == "hexid"
