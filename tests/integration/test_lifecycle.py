"""Starting and stopping: init/shutdown, and nothing left behind however a driver ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import asyncray as ray

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _session_of(pid: int) -> str:
    return f"{pid:x}_"


def _leftovers(driver_pid: int) -> tuple[list, list]:
    prefix = f"asyncray-{_session_of(driver_pid)}"
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "asyncray._private" in cmd and f"s-{_session_of(driver_pid)}" in cmd:
            procs.append((p.pid, cmd[:120]))
    segs = [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    return procs, segs


def _wait_clean(driver_pid: int, timeout: float) -> tuple[list, list]:
    deadline = time.monotonic() + timeout
    while True:
        procs, segs = _leftovers(driver_pid)
        if (not procs and not segs) or time.monotonic() > deadline:
            return procs, segs
        time.sleep(0.05)


SCRIPT_HOLDS_CLUSTER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import asyncray as ray
    ray.init(num_cpus=2)
    @ray.remote
    def f(x):
        return x
    keep = ray.put(np.ones(1_000_000))          # a segment in the store
    assert ray.get(f.remote(1)) == 1
    print("READY", flush=True)
    {ending}
""")


def _run_until_ready(ending: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT_HOLDS_CLUSTER.format(ending=ending)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "READY", proc.stderr.read()
    return proc


def test_import_starts_nothing():
    code = ("import threading, os, sys; before = threading.active_count(); env = dict(os.environ); "
            "import asyncray; assert threading.active_count() == before; assert dict(os.environ) == env; "
            "import psutil; assert not psutil.Process().children(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_script_ending_without_shutdown_leaves_nothing():
    proc = _run_until_ready("")
    assert proc.wait(timeout=30) == 0
    assert _wait_clean(proc.pid, 5) == ([], [])


def test_kill_9_of_driver_leaves_nothing_within_5s():
    proc = _run_until_ready("time.sleep(60)")
    assert _leftovers(proc.pid)[0], "the cluster should be running"
    proc.kill()
    proc.wait()
    assert _wait_clean(proc.pid, 5) == ([], [])


def test_ctrl_c_in_blocked_get_raises_and_runtime_stays_usable():
    ending = textwrap.dedent("""
    @ray.remote
    def slow():
        time.sleep(60)
    try:
        print("BLOCKING", flush=True)
        ray.get(slow.remote())
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    print("AFTER", ray.get(f.remote(2)), flush=True)
    ray.shutdown()
    """)
    proc = _run_until_ready(ending)
    assert proc.stdout.readline().strip() == "BLOCKING"
    time.sleep(0.2)  # let the driver enter get(); the signal is what is under test, not a race
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "INTERRUPTED" in out and "AFTER 2" in out, err
    assert proc.returncode == 0
    assert _wait_clean(proc.pid, 5) == ([], [])


def test_ctrl_c_ending_the_script_leaves_nothing():
    proc = _run_until_ready("time.sleep(60)")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert _wait_clean(proc.pid, 5) == ([], [])


def test_init_shutdown_init_again():
    for _ in range(3):
        ray.init(num_cpus=1)
        assert ray.is_initialized()
        assert ray.get(ray.put("x")) == "x"
        ray.shutdown()
        assert not ray.is_initialized()


def test_second_init_raises_unless_ignored():
    with ray.init(num_cpus=1):
        with pytest.raises(RuntimeError, match="ignore_reinit_error"):
            ray.init()
        ray.init(ignore_reinit_error=True)
        assert ray.is_initialized()
    assert not ray.is_initialized()


def test_first_remote_call_initialises():
    @ray.remote
    def one():
        return 1

    assert not ray.is_initialized()
    try:
        assert ray.get(one.remote()) == 1
        assert ray.is_initialized()
    finally:
        ray.shutdown()


def test_init_rejects_unknown_keyword_and_bad_address():
    with pytest.raises(TypeError, match="bogus"):
        ray.init(bogus=1)
    with pytest.raises(ConnectionError, match="auto"):
        ray.init(address="auto")
    assert not ray.is_initialized()


def test_init_resources_and_namespace():
    with ray.init(num_cpus=1, resources={"foo": 2}, namespace="myns"):
        assert ray.cluster_resources()["foo"] == 2
        assert ray.get_runtime_context().namespace == "myns"
    with pytest.raises(ValueError, match="num_cpus"):
        ray.init(resources={"CPU": 2})
