"""Shared fixtures and the leak guard every test runs under.

The guard fails a test that leaves behind processes it started (directly or through a
cluster) or /dev/shm segments of a session that is no longer running. A module may share
one cluster across its tests (`shared_cluster`); the guard then allows that cluster's
processes and segments until the module ends, and checks once more after it is shut down.
"""
from __future__ import annotations

import os
import time

import psutil
import pytest

import asyncray
from asyncray._private import runtime as runtime_mod


def _descendants() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def _cluster_pids() -> set[int]:
    rt = runtime_mod.current()
    if rt is None:
        return set()
    pids = set()
    for child in rt.children:
        pids.add(child.pid)
        try:
            pids |= {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
        except psutil.Error:
            pass
    return pids


def _segments() -> set[str]:
    """Segments of clusters this test process started (other test runs may share the machine)."""
    prefix = f"asyncray-{os.getpid():x}_"
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}
    except FileNotFoundError:
        return set()


def _live_session_segments() -> set[str]:
    rt = runtime_mod.current()
    if rt is None:
        return set()
    prefix = f"asyncray-{rt.session}-"
    return {n for n in _segments() if n.startswith(prefix)}


def _wait_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
        if alive:
            time.sleep(0.02)
    return alive


@pytest.fixture(autouse=True)
def leak_guard():
    before = _descendants()
    seg_before = _segments()
    yield
    # The shared cluster may fork a worker at any moment: judge its processes after listing ours.
    candidates = _descendants() - before
    leaked = _wait_gone(candidates - _cluster_pids())
    leaked -= _cluster_pids()
    segs = _segments() - seg_before - _live_session_segments()
    for pid in leaked:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    assert not leaked, f"test leaked processes: {[(p, ' '.join(psutil.Process(p).cmdline())) for p in leaked]}"
    assert not segs, f"test leaked shared-memory segments: {sorted(segs)}"


@pytest.fixture(scope="module")
def shared_cluster():
    """One local cluster (2 CPUs) for every test of a module."""
    ctx = asyncray.init(num_cpus=2)
    yield ctx
    asyncray.shutdown()


@pytest.fixture
def cluster():
    """A fresh local cluster for one test (for tests that break things)."""
    ctx = asyncray.init(num_cpus=2)
    yield ctx
    asyncray.shutdown()
