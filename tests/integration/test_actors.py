"""Actors on a real local cluster: creation, ordering, async and threaded actors, names,
kill, failures, restarts, handles as values."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import psutil
import pytest

import asyncray as ray
from asyncray import exceptions as exc
from helpers import poll

pytestmark = pytest.mark.usefixtures("shared_cluster")


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, k=1):
        self.n += k
        return self.n

    def get(self):
        return self.n

    def pid(self):
        return os.getpid()

    def fail(self):
        raise KeyError("method failed")

    def context(self):
        ctx = ray.get_runtime_context()
        return ctx.get_actor_id(), ctx.get_actor_name(), ctx.get_assigned_resources()


def test_create_call_and_state():
    c = Counter.remote(10)
    assert ray.get(c.incr.remote()) == 11
    assert ray.get([c.incr.remote(2) for _ in range(3)]) == [13, 15, 17]
    assert "Counter" in repr(c)


def test_direct_calls_name_remote():
    with pytest.raises(TypeError, match=r"Counter\.remote\(\)"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"incr\.remote\(\)"):
        c.incr()


def test_calls_run_in_submission_order_even_when_args_ready_out_of_order(tmp_path):
    @ray.remote
    def slow_value(path, v):
        from helpers import wait_for_file

        wait_for_file(path)
        return v

    c = Counter.remote()
    gate = tmp_path / "gate"
    late = slow_value.remote(str(gate), 100)
    first = c.incr.remote(late)  # waits for its argument
    second = c.incr.remote(1)  # submitted after: must run after `first`
    (gate).write_text("")
    assert ray.get([first, second]) == [100, 101]


def test_method_error_fails_that_call_only():
    c = Counter.remote(5)
    with pytest.raises(KeyError):
        ray.get(c.fail.remote())
    assert ray.get(c.get.remote()) == 5


def test_constructor_error_makes_every_call_actor_died():
    @ray.remote
    class Broken:
        def __init__(self):
            raise ValueError("bad constructor argument")

        def ping(self):
            return 1

    b = Broken.remote()
    with pytest.raises(exc.ActorDiedError, match="bad constructor argument"):
        ray.get(b.ping.remote(), timeout=30)


def test_async_actor_interleaves_and_bounds_concurrency():
    @ray.remote
    class Sleeper:
        def __init__(self):
            self.running = 0
            self.peak = 0

        async def nap(self, s):
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(s)
            self.running -= 1
            return 1

        async def peak_seen(self):
            return self.peak

    a = Sleeper.remote()
    t0 = time.monotonic()
    assert sum(ray.get([a.nap.remote(0.2) for _ in range(50)])) == 50
    assert time.monotonic() - t0 < 5  # interleaved, not 50 x 0.2 s
    assert ray.get(a.peak_seen.remote()) == 50

    bounded = Sleeper.options(max_concurrency=3).remote()
    ray.get([bounded.nap.remote(0.05) for _ in range(12)])
    assert ray.get(bounded.peak_seen.remote()) == 3


def test_async_actor_awaits_refs_and_other_actors():
    @ray.remote
    def double(x):
        return 2 * x

    @ray.remote
    class Caller:
        async def go(self, other):
            a = await double.remote(4)
            b = await other.incr.remote(1)
            values = await asyncio.gather(*[double.remote(i) for i in range(3)])
            return a, b, values

    c = Counter.remote(0)
    assert ray.get(Caller.remote().go.remote(c)) == (8, 1, [0, 2, 4])


def test_threaded_actor_runs_up_to_max_concurrency_at_once():
    @ray.remote(max_concurrency=3)
    class Threaded:
        def __init__(self):
            self.lock = threading.Lock()
            self.running = 0
            self.peak = 0

        def work(self):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            time.sleep(0.1)
            with self.lock:
                self.running -= 1

        def peak_seen(self):
            return self.peak

    t = Threaded.remote()
    ray.get([t.work.remote() for _ in range(9)])
    assert ray.get(t.peak_seen.remote()) == 3


def test_named_actors():
    a = Counter.options(name="named-counter").remote(3)
    assert ray.get(ray.get_actor("named-counter").get.remote()) == 3
    with pytest.raises(ValueError, match="already taken"):
        Counter.options(name="named-counter").remote()
    same = Counter.options(name="named-counter", get_if_exists=True).remote()
    assert ray.get(same.incr.remote()) == 4
    assert "named-counter" in ray.util.list_named_actors()
    assert {"name": "named-counter", "namespace": ray.get_runtime_context().namespace} in \
        ray.util.list_named_actors(all_namespaces=True)
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor("no-such-actor")
    ray.kill(a)
    poll(lambda: "named-counter" not in ray.util.list_named_actors(), "the name to be freed")
    b = Counter.options(name="named-counter").remote(7)  # the name is free again
    assert ray.get(b.get.remote()) == 7
    ray.kill(b)


def test_kill_then_calls_raise_actor_died():
    c = Counter.remote()
    ray.get(c.get.remote())
    ray.kill(c)
    with pytest.raises(exc.ActorDiedError):
        ray.get(c.get.remote(), timeout=30)
    assert isinstance(exc.ActorDiedError(), exc.RayActorError)


def test_crash_restarts_with_fresh_state():
    c = Counter.options(max_restarts=1).remote(0)
    ray.get(c.incr.remote(5))
    pid = ray.get(c.pid.remote())
    os.kill(pid, signal.SIGKILL)
    # The call may land on the dying incarnation (ActorDiedError) or the new one.
    deadline = time.monotonic() + 30
    while True:
        try:
            value = ray.get(c.get.remote(), timeout=30)
            break
        except exc.RayActorError:
            assert time.monotonic() < deadline
    assert value == 0  # constructor re-run
    assert ray.get(c.pid.remote()) != pid
    os.kill(ray.get(c.pid.remote()), signal.SIGKILL)  # no restarts left
    with pytest.raises(exc.ActorDiedError):
        for _ in range(100):
            ray.get(c.get.remote(), timeout=30)


def test_kill_9_mid_call_with_max_task_retries_reruns_it(tmp_path):
    @ray.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def work(self, marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            return "done"

    f = Fragile.remote()
    assert ray.get(f.work.remote(str(tmp_path / "m")), timeout=60) == "done"


def test_exit_actor():
    @ray.remote
    class Quitter:
        def quit(self):
            ray.actor.exit_actor()

        def ping(self):
            return 1

    q = Quitter.remote()
    assert ray.get(q.ping.remote()) == 1
    with pytest.raises(exc.ActorDiedError):
        ray.get(q.quit.remote(), timeout=30)
    with pytest.raises(exc.ActorDiedError):
        ray.get(q.ping.remote(), timeout=30)


def test_handles_are_values_and_actors_create_actors():
    @ray.remote
    def use(handle):
        return ray.get(handle.incr.remote(10))

    @ray.remote
    class Factory:
        def make(self):
            inner = Counter.remote(100)
            return [inner]

    c = Counter.remote(0)
    assert ray.get(use.remote(c)) == 10
    assert ray.get(use.remote(c)) == 20
    factory = Factory.remote()  # owns what it creates: the inner actor lives while the factory does
    (made,) = ray.get(factory.make.remote())
    assert ray.get(made.incr.remote()) == 101


def test_runtime_context_inside_actor():
    c = Counter.options(name="ctx-actor").remote()
    actor_id, name, resources = ray.get(c.context.remote())
    assert len(actor_id) == 32 and name == "ctx-actor" and resources == {}
    unnamed_id, unnamed_name, _ = ray.get(Counter.remote().context.remote())
    assert unnamed_name == ""
    ray.kill(c)


def test_generator_methods_stream():
    @ray.remote
    class Gen:
        def items(self, n):
            for i in range(n):
                yield i

    @ray.remote
    class AsyncGen:
        async def items(self, n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i

    assert [ray.get(r) for r in Gen.remote().items.remote(3)] == [0, 1, 2]
    assert [ray.get(r) for r in AsyncGen.remote().items.remote(3)] == [0, 1, 2]


def test_method_num_returns():
    @ray.remote
    class Pair:
        @ray.method(num_returns=2)
        def two(self):
            return 1, 2

        def three(self):
            return 1, 2, 3

    p = Pair.remote()
    a, b = p.two.remote()
    assert ray.get([a, b]) == [1, 2]
    x, y, z = p.three.options(num_returns=3).remote()
    assert ray.get(z) == 3


def test_max_pending_calls():
    @ray.remote
    class Slow:
        def wait(self, s):
            time.sleep(s)

    s = Slow.options(max_pending_calls=2).remote()
    r1, r2 = s.wait.remote(0.5), s.wait.remote(0)
    with pytest.raises(exc.PendingCallsLimitExceeded):
        s.wait.remote(0)
    ray.get([r1, r2])
    ray.get(s.wait.remote(0))  # room again


def test_actor_dies_when_its_last_handle_goes():
    import gc

    c = Counter.remote()
    pid = ray.get(c.pid.remote())
    del c
    gc.collect()
    poll(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
         "the actor process to exit once no handle is left", timeout=30)


def test_detached_actor_outlives_its_creator_task():
    @ray.remote
    def make():
        Counter.options(name="detached-one", lifetime="detached").remote(42)
        return True

    assert ray.get(make.remote())
    d = ray.get_actor("detached-one")
    assert ray.get(d.get.remote()) == 42
    ray.kill(d)


def test_cancel_actor_calls(tmp_path):
    @ray.remote
    class Busy:
        def block(self, marker):
            open(marker, "w").close()
            while True:  # pure Python: the async exception lands at the next bytecode
                time.sleep(0.01)

        def ping(self):
            return "pong"

    @ray.remote
    class AsyncBusy:
        async def block(self):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                raise

        async def ping(self):
            return "pong"

    from helpers import wait_for_file

    b = Busy.remote()
    marker = str(tmp_path / "running")
    running = b.block.remote(marker)
    queued = b.ping.remote()
    wait_for_file(marker)
    ray.cancel(queued)  # queued behind the running call: never runs
    with pytest.raises(exc.TaskCancelledError):
        ray.get(queued, timeout=30)
    ray.cancel(running)  # beyond Ray: a running sync call is interrupted
    with pytest.raises(exc.TaskCancelledError):
        ray.get(running, timeout=30)
    assert ray.get(b.ping.remote(), timeout=30) == "pong"  # the actor is still usable

    a = AsyncBusy.remote()
    ref = a.block.remote()
    assert ray.get(a.ping.remote()) == "pong"  # block is running (awaiting)
    ray.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert ray.get(a.ping.remote()) == "pong"


def test_blocking_get_inside_async_actor_works_and_warns():
    @ray.remote
    def seven():
        return 7

    @ray.remote
    class Mixed:
        async def blocking(self):
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = ray.get(seven.remote())
            return value, [str(w.message) for w in caught]

    value, warned = ray.get(Mixed.remote().blocking.remote(), timeout=60)
    assert value == 7
    assert any("await ref" in w for w in warned)


def test_concurrency_groups_keep_a_health_check_free(tmp_path):
    gate = str(tmp_path / "gate")

    @ray.remote(concurrency_groups={"io": 2, "health": 1})
    class Threaded:
        @ray.method(concurrency_group="io")
        def busy(self, path):
            from helpers import wait_for_file

            wait_for_file(path)
            return "busy done"

        @ray.method(concurrency_group="health")
        def health(self):
            return "ok"

    @ray.remote(concurrency_groups={"io": 2, "health": 1})
    class Async:
        @ray.method(concurrency_group="io")
        async def busy(self, path):
            while not os.path.exists(path):
                await asyncio.sleep(0.005)
            return "busy done"

        @ray.method(concurrency_group="health")
        async def health(self):
            return "ok"

    for cls in (Threaded, Async):
        a = cls.remote()
        busy = [a.busy.remote(gate) for _ in range(4)]  # fills "io" (2) and queues 2 more
        assert ray.get(a.health.remote(), timeout=30) == "ok"  # never waits behind busy work
        open(gate, "w").close()
        assert ray.get(busy, timeout=30) == ["busy done"] * 4
        os.unlink(gate)


def test_bad_input_errors():
    c = Counter.remote()
    with pytest.raises(AttributeError, match="incr"):
        c.no_such_method.remote()
    with pytest.raises(ValueError, match="actors"):
        ray.kill("not an actor")
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.cancel(c)
    ref = c.get.remote()
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        ray.cancel(ref, force=True)
    assert ray.get(ref) == 0  # the call went on
    with pytest.raises(TypeError, match="Argument 0"):
        Counter.remote(threading.Lock())


def test_handle_after_shutdown_is_a_clear_error():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import asyncray as ray
        ray.init(num_cpus=1)
        @ray.remote
        class A:
            def f(self):
                return 1
        a = A.remote()
        ray.get(a.f.remote())
        ray.shutdown()
        try:
            a.f.remote()
        except RuntimeError as e:
            print("error:", e)
    """)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=repo))
    assert "error:" in out.stdout and "shut down" in out.stdout, out.stdout + out.stderr
