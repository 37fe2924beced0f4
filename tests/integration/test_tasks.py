"""Tasks on a real local cluster: submission, arguments, returns, errors, retries."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import asyncray as ray
from asyncray import exceptions as exc

pytestmark = pytest.mark.usefixtures("shared_cluster")


@ray.remote
def add(a, b=0):
    return a + b


@ray.remote
def pid():
    return os.getpid()


def test_remote_returns_ref_and_value():
    ref = add.remote(1, 2)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 3
    assert ray.get([add.remote(i, b=i) for i in range(10)]) == [2 * i for i in range(10)]


def test_direct_call_names_remote():
    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        add(1, 2)


def test_ref_args_are_resolved_and_nested_refs_stay_refs():
    @ray.remote
    def kinds(x, nested):
        return type(x).__name__, type(nested[0]).__name__, ray.get(nested[0])

    r = ray.put(41)
    assert ray.get(kinds.remote(add.remote(r, 1), [r])) == ("int", "ObjectRef", 41)


def test_many_tasks_pipelined():
    refs = [add.remote(i, 1) for i in range(3000)]
    assert sum(ray.get(refs)) == sum(range(1, 3001))


def test_num_returns():
    @ray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    a, b, c = three.remote()
    assert ray.get([a, b, c]) == [1, 2, 3]

    @ray.remote(num_returns=2)
    def wrong():
        return 1, 2, 3

    x, y = wrong.remote()
    with pytest.raises(ValueError, match="num_returns=2"):
        ray.get(x)


def test_task_error_is_instance_of_cause():
    @ray.remote
    def boom():
        return 1 / 0

    ref = boom.remote()
    with pytest.raises(ZeroDivisionError) as info:
        ray.get(ref)
    assert isinstance(info.value, exc.RayTaskError)
    assert isinstance(info.value.cause, ZeroDivisionError)
    assert "boom" in str(info.value)
    assert "_private" not in info.value.traceback_str


class MainError(Exception):
    pass


def test_user_exception_class_round_trips_and_propagates():
    @ray.remote
    def fail():
        raise MainError("custom")

    @ray.remote
    def downstream(x):
        return x

    with pytest.raises(MainError, match="custom"):
        ray.get(downstream.remote(fail.remote()))


def test_unserializable_argument_raises_at_once():
    import threading

    lock = threading.Lock()
    with pytest.raises(TypeError, match="Argument 1"):
        add.remote(1, lock)


def test_unserializable_return_is_task_error_and_type_error():
    @ray.remote
    def returns_lock():
        import threading

        return threading.Lock()

    with pytest.raises(TypeError) as info:
        ray.get(returns_lock.remote())
    assert isinstance(info.value, exc.RayTaskError)


def test_worker_crash_retries_then_fails():
    @ray.remote(max_retries=2)
    def die():
        os._exit(1)

    with pytest.raises(exc.WorkerCrashedError):
        ray.get(die.remote(), timeout=60)
    assert ray.get(add.remote(1, 1)) == 2  # the pool replaced the dead workers


def test_worker_crash_retry_succeeds(tmp_path):
    marker = tmp_path / "died-once"

    @ray.remote(max_retries=1)
    def flaky(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "ok"

    assert ray.get(flaky.remote(str(marker)), timeout=60) == "ok"


def test_retry_exceptions(tmp_path):
    counter = tmp_path / "count"

    @ray.remote(max_retries=3, retry_exceptions=[KeyError])
    def sometimes(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n < 2:
            raise KeyError(n)
        return n

    assert ray.get(sometimes.remote(str(counter))) == 2

    @ray.remote(max_retries=3, retry_exceptions=[KeyError])
    def other():
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        ray.get(other.remote())


def test_nested_tasks_more_parents_than_cpus():
    @ray.remote
    def parent(i):
        return ray.get(add.remote(i, 100))

    assert ray.get([parent.remote(i) for i in range(6)], timeout=60) == [100 + i for i in range(6)]


def test_large_numpy_argument_and_return_zero_copy():
    @ray.remote
    def total(a):
        return float(a.sum()), a.flags.writeable

    @ray.remote
    def make(n):
        return np.ones(n)

    arr = np.arange(1_000_000, dtype=np.float64)
    ref = ray.put(arr)
    assert ray.get(total.remote(ref)) == (float(arr.sum()), False)
    assert ray.get(total.remote(arr))[0] == float(arr.sum())
    big = ray.get(make.remote(500_000))
    assert big.shape == (500_000,) and not big.flags.writeable


def test_max_calls_restarts_worker():
    @ray.remote(max_calls=1)
    def who():
        return os.getpid()

    pids = ray.get([who.remote() for _ in range(3)])
    assert len(set(pids)) == 3


def test_runtime_env_env_vars_only_in_task():
    @ray.remote(runtime_env={"env_vars": {"ASYNCRAY_TEST_VAR": "yes"}})
    def read():
        return os.environ.get("ASYNCRAY_TEST_VAR")

    @ray.remote
    def read_plain():
        return os.environ.get("ASYNCRAY_TEST_VAR")

    assert ray.get(read.remote()) == "yes"
    assert ray.get(read_plain.remote()) is None
    assert "ASYNCRAY_TEST_VAR" not in os.environ


def test_runtime_env_working_dir(tmp_path):
    (tmp_path / "helper_mod_xyz.py").write_text("VALUE = 7\n")

    @ray.remote(runtime_env={"working_dir": str(tmp_path)})
    def use():
        import helper_mod_xyz

        return helper_mod_xyz.VALUE, os.getcwd()

    assert ray.get(use.remote()) == (7, str(tmp_path))


def test_blas_threads_limited():
    @ray.remote
    def env():
        return os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")

    assert ray.get(env.remote()) == ("1", "1")


def test_runtime_context():
    ctx = ray.get_runtime_context()
    assert len(ctx.get_node_id()) == 56
    assert ctx.namespace
    assert ctx.get_actor_id() is None
    with pytest.raises(RuntimeError):
        ctx.current_actor

    @ray.remote
    def ids():
        c = ray.get_runtime_context()
        return c.get_task_id(), c.get_node_id(), c.get_job_id()

    task_id, node_id, job_id = ray.get(ids.remote())
    assert task_id and node_id == ctx.get_node_id() and job_id == ctx.get_job_id()


def test_resources_visible():
    import time

    total = ray.cluster_resources()
    assert total["CPU"] == 2

    @ray.remote
    def hold(seconds):
        time.sleep(seconds)

    ref = hold.remote(1.0)
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0) != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ray.available_resources().get("CPU", 0) == 1
    ray.get(ref)
    while ray.available_resources().get("CPU", 0) != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ray.available_resources()["CPU"] == 2


def test_blas_threads_follow_task_cpus():
    @ray.remote(num_cpus=2)
    def two():
        from threadpoolctl import threadpool_info

        return os.environ["OMP_NUM_THREADS"], {i["num_threads"] for i in threadpool_info()}

    @ray.remote
    def one():
        from threadpoolctl import threadpool_info

        return os.environ["OMP_NUM_THREADS"], {i["num_threads"] for i in threadpool_info()}

    assert ray.get(two.remote()) == ("2", {2})
    assert ray.get(one.remote()) == ("1", {1})


def test_segfault_in_task_is_worker_crashed_error():
    @ray.remote(max_retries=0)
    def segfault():
        import ctypes

        ctypes.string_at(0)

    with pytest.raises(exc.WorkerCrashedError, match="signal 11"):
        ray.get(segfault.remote(), timeout=60)
    assert ray.get(add.remote(2, 2)) == 4


def test_broken_runtime_env_fails_instead_of_forking_forever(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()

    @ray.remote(runtime_env={"working_dir": str(wd)})
    def f():
        return 1

    wd.rmdir()  # gone after validation: every worker for it dies while starting
    with pytest.raises(exc.RuntimeEnvSetupError, match="working_dir"):
        ray.get(f.remote(), timeout=60)
