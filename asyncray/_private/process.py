"""Starting and stopping runtime processes so that none outlives its parent.

Every child gets three ties to its parent, because no single one is enough:
- a *liveness pipe*: the parent keeps the write end, the child watches the read end in its
  event loop and stops on EOF, which the kernel delivers however the parent died (kill -9
  included) and which every process forked from the child inherits;
- PR_SET_PDEATHSIG (Linux), set by the child itself, as a second line for a child that is
  stuck in user code (it fires when the parent *thread* that forked exits, so parents spawn
  from their long-lived runtime thread);
- a *ready handshake*: the child writes one JSON line to an inherited pipe once it is bound,
  and the parent waits for it with a deadline, showing the child's log tail on failure.
Stopping is SIGTERM, then SIGKILL after a grace period, always by pid, never by name.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


# Signals that must reach the main thread. A process-directed signal goes to any thread that
# does not block it; Python runs handlers in the main thread only after that thread wakes up,
# so if the runtime thread (or a zmq I/O thread, which inherits its mask) took SIGINT, the main
# thread would stay asleep in a lock: Ctrl-C would never interrupt `get`, and a test timer
# (SIGALRM) never fire. Faults (SEGV, BUS, ...) are thread-directed and stay unblocked.
_THREAD_DIRECTED = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL",
                                                  "SIGABRT", "SIGTRAP", "SIGSYS") if hasattr(signal, n)}
MAIN_THREAD_SIGNALS = set(signal.valid_signals()) - _THREAD_DIRECTED


def keep_signals_off_this_thread() -> None:
    """Called first thing in the runtime thread: leave process signals to the main thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)


def set_parent_death_signal(expected_parent: int, sig: int = signal.SIGKILL) -> None:
    """Die with `sig` when the parent dies; exit now if it already has.

    Also unblocks the main-thread signals: we were forked from a parent's runtime thread,
    which blocks them, and exec keeps the signal mask.
    """
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MAIN_THREAD_SIGNALS)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except OSError:
            pass
    if os.getppid() != expected_parent:
        os._exit(1)


def liveness_pipe() -> tuple[int, int]:
    """(read_end, write_end); the write end stays in this process only."""
    r, w = os.pipe()
    os.set_inheritable(w, False)
    return r, w


class Child:
    """A runtime process we started: its Popen, log file and ready message."""

    def __init__(self, popen: subprocess.Popen, ready_fd: int, log_path: str, role: str) -> None:
        self.popen = popen
        self.ready_fd = ready_fd
        self.log_path = log_path
        self.role = role

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Block until the child reports ready (its JSON line) or fail with its log tail."""
        deadline = time.monotonic() + timeout
        buf = b""
        import select

        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"asyncray {self.role} did not start within {timeout:.0f} s.\n{self.log_tail()}")
                r, _, _ = select.select([self.ready_fd], [], [], min(left, 0.5))
                if r:
                    chunk = os.read(self.ready_fd, 65536)
                    if not chunk:
                        code = self.popen.wait(timeout=5)
                        raise RuntimeError(
                            f"asyncray {self.role} exited with code {code} during start-up.\n{self.log_tail()}"
                        )
                    buf += chunk
        finally:
            os.close(self.ready_fd)
            self.ready_fd = -1
        return json.loads(buf.split(b"\n", 1)[0])

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()[-n:]
        except OSError:
            return "(no log)"
        return f"Last lines of {self.log_path}:\n" + "\n".join(lines)

    def stop(self, grace: float) -> None:
        stop_pid(self.popen, grace)


def spawn(role: str, module: str, args: dict[str, Any], *, log_path: str, pass_fds: tuple[int, ...] = (),
          env: dict[str, str] | None = None) -> Child:
    """Start `python -m module` with `args` (JSON) and a ready pipe; returns at once."""
    ready_r, ready_w = os.pipe()
    os.set_inheritable(ready_r, False)
    args = dict(args, ready_fd=ready_w, parent_pid=os.getpid())
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(args)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(ready_w, *pass_fds),
            env=env,
            start_new_session=True,  # Ctrl-C in the driver's terminal is the driver's to handle
        )
    os.close(ready_w)
    return Child(popen, ready_r, log_path, role)


def report_ready(args: dict[str, Any], info: dict[str, Any]) -> None:
    """Child side of the handshake."""
    fd = args["ready_fd"]
    os.write(fd, json.dumps(info).encode() + b"\n")
    os.close(fd)


def stop_pid(popen: subprocess.Popen, grace: float) -> None:
    if popen.poll() is not None:
        return
    try:
        popen.terminate()
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        logger.warning("pid %d ignored SIGTERM for %.1f s; killing it", popen.pid, grace)
        popen.kill()
        popen.wait()
    except ProcessLookupError:
        pass




def watch_exit(loop: Any, pid: int, on_exit: Any) -> Any:
    """Call on_exit() in `loop` when process `pid` exits (a pidfd: no polling, works for
    processes that are not our children). Returns a function that stops watching; on systems
    without pidfds nothing is watched."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return lambda: None
    closed = []

    def unwatch() -> None:
        if not closed:
            closed.append(True)
            loop.remove_reader(fd)
            os.close(fd)

    def fired() -> None:
        unwatch()
        on_exit()

    loop.add_reader(fd, fired)
    return unwatch


def new_event_loop():
    """uvloop where installed, else the default asyncio loop."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        import asyncio

        return asyncio.new_event_loop()
