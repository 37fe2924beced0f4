"""The awaitable surface on a real local cluster: `await ref`, asyncio's combinators over refs,
ref.future(), get_async / wait_async, errors through await, and the async_service example.

Tasks that must stay unfinished for a while wait on a *gate* (a file the test creates), never on
a timer, so every ordering asserted here holds however slow the machine is.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import asyncray as ray
from helpers import wait_for_file
from asyncray import exceptions as exc

pytestmark = pytest.mark.usefixtures("shared_cluster")

ROOT = Path(__file__).resolve().parents[2]
GATE_LIMIT_S = 60.0  # a gate nobody opens fails its task after this long instead of hanging


class ServiceError(Exception):
    """An application exception class of this module (travels by reference to the workers)."""


@ray.remote
def square(x):
    return x * x


@ray.remote
def gated(path, value):
    """Return `value` once the file `path` exists."""
    wait_for_file(path, GATE_LIMIT_S)
    return value


@ray.remote
def fails(msg):
    raise ServiceError(msg)


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def open(self) -> None:
        Path(self.path).touch()


@pytest.fixture
def gate(tmp_path):
    g = Gate(tmp_path / "gate")
    yield g
    g.open()  # whatever happened, let gated tasks finish


# ---------------------------------------------------------------------------------- await ref
@pytest.mark.asyncio
async def test_await_ref():
    assert await square.remote(7) == 49
    assert await ray.put({"k": [1, 2]}) == {"k": [1, 2]}
    ref = square.remote(8)
    assert await ref == 64
    assert await ref == 64  # awaiting again gives the value again


@pytest.mark.asyncio
async def test_await_suspends_instead_of_blocking_the_loop(gate):
    ref = gated.remote(gate.path, "opened")
    task = asyncio.ensure_future(ref)
    for _ in range(5):
        await asyncio.sleep(0)  # the loop keeps running other work while the ref is pending
    assert not task.done()
    gate.open()
    assert await asyncio.wait_for(task, GATE_LIMIT_S) == "opened"


# ------------------------------------------------------------------------- asyncio combinators
@pytest.mark.asyncio
async def test_gather_200_refs():
    refs = [square.remote(i) for i in range(200)]
    assert await asyncio.gather(*refs) == [i * i for i in range(200)]
    # The same ref twice, and refs mixed with coroutines.
    r = square.remote(3)

    async def plain():
        return "coro"

    assert await asyncio.gather(r, r, plain(), ray.put(5)) == [9, 9, "coro", 5]


@pytest.mark.asyncio
async def test_asyncio_wait_all_completed():
    # Since Python 3.11 asyncio.wait() takes futures only: wrap refs with ensure_future or as_future().
    refs = [square.remote(i) for i in range(20)]
    futs = [asyncio.ensure_future(r) for r in refs[:10]] + [r.as_future() for r in refs[10:]]
    done, pending = await asyncio.wait(futs)
    assert not pending and done == set(futs)
    assert [f.result() for f in futs] == [i * i for i in range(20)]


@pytest.mark.asyncio
async def test_asyncio_wait_on_bare_refs():
    refs = [square.remote(i) for i in range(5)]
    done, pending = await asyncio.wait(refs, timeout=GATE_LIMIT_S)
    assert not pending and len(done) == 5


@pytest.mark.asyncio
async def test_asyncio_wait_first_completed(gate):
    ready = ray.put("ready")
    blocked = asyncio.ensure_future(gated.remote(gate.path, "late"))
    first = asyncio.ensure_future(ready)
    done, pending = await asyncio.wait([first, blocked], return_when=asyncio.FIRST_COMPLETED)
    assert done == {first} and pending == {blocked}
    assert first.result() == "ready"
    gate.open()
    done, pending = await asyncio.wait(pending, timeout=GATE_LIMIT_S)
    assert done == {blocked} and not pending
    assert blocked.result() == "late"


@pytest.mark.asyncio
async def test_wait_for_finishes():
    assert await asyncio.wait_for(square.remote(5), timeout=GATE_LIMIT_S) == 25


@pytest.mark.asyncio
async def test_wait_for_times_out_and_the_ref_stays_usable(gate):
    ref = gated.remote(gate.path, "eventually")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ref, timeout=0.2)
    gate.open()
    # The cancelled await did not spoil the ref: sync and async gets both still see the value.
    assert await asyncio.wait_for(ref, timeout=GATE_LIMIT_S) == "eventually"
    assert ray.get(ref, timeout=GATE_LIMIT_S) == "eventually"


@pytest.mark.asyncio
async def test_as_completed_yields_in_completion_order(gate):
    blocked = gated.remote(gate.path, "second")
    ready = ray.put("first")
    order = []
    for fut in asyncio.as_completed([blocked, ready], timeout=GATE_LIMIT_S):
        order.append(await fut)
        if len(order) == 1:
            gate.open()  # only now can the gated task finish
    assert order == ["first", "second"]


@pytest.mark.asyncio
async def test_as_completed_many():
    refs = [square.remote(i) for i in range(30)]
    got = [await f for f in asyncio.as_completed(refs, timeout=GATE_LIMIT_S)]
    assert sorted(got) == [i * i for i in range(30)]


# ----------------------------------------------------------------------------- ref.future()
def test_ref_future_is_a_concurrent_future():
    fut = square.remote(6).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=GATE_LIMIT_S) == 36

    err = fails.remote("via future").future()
    e = err.exception(timeout=GATE_LIMIT_S)
    assert isinstance(e, ServiceError) and isinstance(e, exc.RayTaskError)


@pytest.mark.asyncio
async def test_ref_future_wraps_into_asyncio():
    assert await asyncio.wrap_future(square.remote(11).future()) == 121


# ------------------------------------------------------------------------------ get_async
@pytest.mark.asyncio
async def test_get_async_values():
    refs = [square.remote(i) for i in range(10)]
    assert await ray.get_async(refs) == [i * i for i in range(10)]
    assert await ray.get_async(refs[3], timeout=GATE_LIMIT_S) == 9
    assert await ray.get_async([]) == []


@pytest.mark.asyncio
async def test_get_async_timeout_raises_get_timeout_error(gate):
    ref = gated.remote(gate.path, "after the timeout")
    with pytest.raises(exc.GetTimeoutError) as info:
        await ray.get_async(ref, timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(TimeoutError):
        await ray.get_async([ray.put(1), ref], timeout=0)
    gate.open()
    assert await ray.get_async(ref, timeout=GATE_LIMIT_S) == "after the timeout"


# ------------------------------------------------------------------------------ wait_async
@pytest.mark.asyncio
async def test_wait_async_ready_and_not_ready(gate):
    a, b = ray.put("a"), ray.put("b")
    blocked = gated.remote(gate.path, "c")
    refs = [a, blocked, b]

    ready, not_ready = await ray.wait_async(refs, num_returns=2)
    assert ready == [a, b] and not_ready == [blocked]

    ready, not_ready = await ray.wait_async(refs, num_returns=1)
    assert len(ready) == 1 and ready[0] in (a, b)
    assert set(not_ready) == set(refs) - set(ready) and len(not_ready) == 2

    # Not enough ready within the timeout: whatever is ready so far, and no error.
    ready, not_ready = await ray.wait_async(refs, num_returns=3, timeout=0.2)
    assert ready == [a, b] and not_ready == [blocked]
    ready, not_ready = await ray.wait_async(refs, num_returns=3, timeout=0)
    assert ready == [a, b] and not_ready == [blocked]

    gate.open()
    ready, not_ready = await ray.wait_async(refs, num_returns=3, timeout=GATE_LIMIT_S)
    assert ready == refs and not_ready == []
    assert await ray.get_async(ready) == ["a", "c", "b"]


@pytest.mark.asyncio
async def test_wait_async_checks_arguments():
    r = ray.put(1)
    with pytest.raises(ValueError):
        await ray.wait_async([r], num_returns=2)
    with pytest.raises(TypeError):
        await ray.wait_async(r)
    with pytest.raises(ValueError, match="unique"):
        await ray.wait_async([r, r], num_returns=1)


@pytest.mark.asyncio
async def test_wait_async_on_an_empty_list():
    assert await ray.wait_async([]) == ([], [])


# --------------------------------------------------------------------------------- errors
@pytest.mark.asyncio
async def test_task_error_through_await_is_the_original_class():
    with pytest.raises(ServiceError) as info:
        await fails.remote("bad request")
    assert isinstance(info.value, exc.RayTaskError)
    assert isinstance(info.value.cause, ServiceError)
    assert "bad request" in str(info.value)

    with pytest.raises(ServiceError):
        await ray.get_async([square.remote(1), fails.remote("in a list")])
    with pytest.raises(ServiceError):
        await asyncio.gather(square.remote(2), fails.remote("in gather"))


# ------------------------------------------------------------- sync API inside a coroutine
@pytest.mark.asyncio
async def test_sync_get_inside_a_coroutine_completes():
    asyncio.get_running_loop()  # the caller's loop is running (and blocked during the call)
    assert ray.get(square.remote(3)) == 9
    assert ray.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    ready, not_ready = ray.wait([square.remote(4)], timeout=GATE_LIMIT_S)
    assert len(ready) == 1 and not not_ready
    assert await ready[0] == 16


# ------------------------------------------------- a ref abandoned by a loop that has closed
def test_ref_abandoned_by_a_closed_loop_still_wakes_other_waiters(gate):
    """asyncio.run() ends while an `await ref` was cancelled mid-flight: the ref's other waiters
    (here a concurrent.futures.Future, registered later) must still be woken when it finishes."""
    ref = gated.remote(gate.path, "done")

    async def give_up():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ref, 0.1)

    asyncio.run(give_up())  # that loop is closed now
    fut = ref.future()
    gate.open()
    deadline = time.monotonic() + GATE_LIMIT_S
    while not ray.wait([ref], timeout=0)[0]:  # the value has arrived in this process
        assert time.monotonic() < deadline, "the gated task never finished"
        time.sleep(0.01)
    # The reply that delivered the value wakes every waiter in the same step: a margin suffices.
    assert fut.result(timeout=5) == "done"


# ---------------------------------------------------------------------------- the example
@pytest.mark.timeout(90)
def test_async_service_example_runs():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "async_service.py")], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"examples/async_service.py did not finish in 60 s\nstdout:\n{out}\nstderr:\n{err}")
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "await ref:" in out and "81" in out
    assert "timed out, then got 'late'" in out
    assert "ValueError caught" in out
