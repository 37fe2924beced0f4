"""Waiting helpers shared by the tests: wait on a condition with a deadline, never a bare sleep.

Importable from test modules and from tasks alike (workers get the driver's import path).
"""
from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Callable

import asyncray as ray


def poll(predicate: Callable[[], bool], what: str, timeout: float = 30.0, collect: bool = False) -> None:
    """Return once predicate() is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        if collect:
            gc.collect()
        time.sleep(0.005)


def wait_for_file(path: str, timeout: float = 60.0) -> None:
    """A gate: return once `path` exists (tests open gates to let tasks go on)."""
    poll(lambda: os.path.exists(path), f"gate {path} to open", timeout)


def alive(pid: int) -> bool:
    """Whether process `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@ray.remote(num_cpus=0)
class CountingGate:
    """An async actor that holds every `wait()` call until `open()`; `started(n)` returns once n
    calls are waiting (so a test knows n tasks are running), without polling."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.count = 0
        self.changed = asyncio.Event()

    async def wait(self) -> None:
        self.count += 1
        self.changed.set()
        await self.opened.wait()

    async def started(self, n: int) -> None:
        while self.count < n:
            self.changed.clear()
            await self.changed.wait()

    async def open(self) -> None:
        self.opened.set()
