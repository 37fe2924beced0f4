"""Behaviour seen from a whole driver script: __main__ classes, unpicklable errors, worker
output forwarded with Ray's prefix (or not), the job's runtime_env, GPU tasks' max_calls, and
workers dying with their node manager."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    code = "import asyncray as ray\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO))


def test_main_exception_class_round_trips():
    out = run_script("""
        class AppError(Exception):
            pass
        ray.init(num_cpus=1)
        @ray.remote
        def fail():
            raise AppError("from the worker")
        try:
            ray.get(fail.remote())
        except AppError as e:
            print("caught", type(e).__name__, isinstance(e, ray.exceptions.RayTaskError), e.cause)
        ray.shutdown()
    """)
    assert "caught RayTaskError(AppError) True from the worker" in out.stdout, out.stderr


def test_unpicklable_exception_reaches_caller_as_text():
    out = run_script("""
        import threading
        class Unpicklable(Exception):
            def __init__(self, msg):
                super().__init__(msg)
                self.lock = threading.Lock()
        ray.init(num_cpus=1)
        @ray.remote
        def fail():
            raise Unpicklable("cannot cross processes")
        try:
            ray.get(fail.remote())
        except ray.exceptions.RayError as e:
            print("caught:", "cannot cross processes" in str(e), type(e).__name__)
        ray.shutdown()
    """)
    assert "caught: True" in out.stdout, out.stdout + out.stderr


def test_worker_print_is_forwarded_with_prefix():
    out = run_script("""
        ray.init(num_cpus=1)
        @ray.remote
        def shout():
            print("hello from a task")
            return 1
        ray.get(shout.remote())
        ray.shutdown()
    """)
    lines = [ln for ln in out.stdout.splitlines() if "hello from a task" in ln]
    assert lines and lines[0].startswith("(shout pid="), out.stdout


def test_log_to_driver_false_keeps_output_out():
    out = run_script("""
        ray.init(num_cpus=1, log_to_driver=False)
        @ray.remote
        def shout():
            print("should not be seen")
        ray.get(shout.remote())
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr
    assert "should not be seen" not in out.stdout


def test_init_runtime_env_applies_to_tasks_only():
    out = run_script("""
        import os
        ray.init(num_cpus=1, runtime_env={"env_vars": {"JOB_LEVEL": "1"}})
        @ray.remote
        def read():
            return os.environ.get("JOB_LEVEL"), os.environ.get("TASK_LEVEL")
        print(ray.get(read.remote()), ray.get(read.options(runtime_env={"env_vars": {"TASK_LEVEL": "2"}}).remote()),
              os.environ.get("JOB_LEVEL"))
        ray.shutdown()
    """)
    assert "('1', None) ('1', '2') None" in out.stdout, out.stderr


def test_gpu_task_worker_exits_after_one_call():
    out = run_script("""
        import os
        ray.init(num_cpus=2, num_gpus=1)
        @ray.remote(num_gpus=1)
        def gpu_task():
            return os.getpid()
        pids = ray.get([gpu_task.remote() for _ in range(3)])
        print(len(set(pids)))
        ray.shutdown()
    """)
    assert out.stdout.strip() == "3", out.stderr


def test_runtime_env_unsupported_key_is_a_clear_error():
    out = run_script("""
        try:
            @ray.remote(runtime_env={"pip": ["requests"]})
            def f():
                pass
        except ValueError as e:
            print("error:", e)
    """)
    assert "error:" in out.stdout and "pip" in out.stdout, out.stderr


def test_workers_die_with_their_node_manager():
    import asyncray as ray
    from asyncray._private import runtime

    ray.init(num_cpus=2)
    try:
        rt = runtime.current()
        node = psutil.Process(rt.children[1].pid)
        descendants = node.children(recursive=True)
        assert descendants, "the node manager should have a template and workers"
        @ray.remote
        def slow():
            import time

            time.sleep(60)

        ref = slow.remote()
        node.send_signal(signal.SIGKILL)
        gone, alive = psutil.wait_procs(descendants, timeout=5)
        assert not alive, f"survived their node manager: {alive}"
        # The driver learns of it at once: what needed the node fails instead of hanging.
        with pytest.raises(ray.exceptions.LocalRayletDiedError):
            ray.get(ref, timeout=10)
        with pytest.raises(ray.exceptions.LocalRayletDiedError):
            ray.get(slow.remote(), timeout=10)
    finally:
        ray.shutdown()


def test_sync_method_blocking_an_async_actor_is_reported_by_name():
    out = run_script("""
        import asyncio, time
        ray.init(num_cpus=1)
        @ray.remote
        class Service:
            async def fast(self):
                return 1
            def block_the_loop(self):
                time.sleep(1.5)
                return 2
        s = Service.remote()
        ray.get(s.fast.remote())
        print(ray.get(s.block_the_loop.remote()))  # the report is sent 1 s before this reply
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "block_the_loop" in text and "blocked the event loop" in text, text
