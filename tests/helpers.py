"""Waiting helpers shared by the tests: wait on a condition with a deadline, never a bare sleep.

Importable from test modules and from tasks alike (workers get the driver's import path).
"""
from __future__ import annotations

import gc
import os
import time
from typing import Callable


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
