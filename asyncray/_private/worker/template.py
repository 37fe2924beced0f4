"""The worker template: a warm, single-threaded process that forks workers in ~3 ms.

Started by the node manager with BLAS thread variables already set, it imports what every
worker needs (numpy, cloudpickle, pyzmq without a context, the runtime), freezes the GC so
forked children share those pages, and then only forks. It must never start a thread or a zmq
context: neither survives fork.

Commands arrive as JSON lines on `cmd_fd`; events ("spawned", "exited") leave as JSON lines on
`event_fd`, so the node manager learns every worker's pid and exit status without being its
parent. The template exits (killing its children) when the node manager's liveness pipe
reaches EOF or the command pipe closes.
"""
from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import sys


def main(args: dict) -> None:
    from asyncray._private.process import report_ready, set_parent_death_signal

    set_parent_death_signal(args["parent_pid"])
    import cloudpickle  # noqa: F401  (warm imports shared with every forked worker)
    import msgpack  # noqa: F401
    import numpy  # noqa: F401
    import zmq  # noqa: F401

    from asyncray._private.worker import main as worker_main

    gc.freeze()
    cmd_fd, event_fd, live_fd = args["cmd_fd"], args["event_fd"], args["liveness_fd"]
    children: dict[int, str] = {}
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_w, False)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: _stop(children))
    report_ready(args, {"pid": os.getpid()})

    def emit(event: dict) -> None:
        os.write(event_fd, json.dumps(event).encode() + b"\n")

    sel = selectors.DefaultSelector()
    sel.register(cmd_fd, selectors.EVENT_READ, "cmd")
    sel.register(live_fd, selectors.EVENT_READ, "live")
    sel.register(sig_r, selectors.EVENT_READ, "sig")
    pending = b""
    while True:
        for key, _ in sel.select():
            if key.data == "live":
                _stop(children)
            elif key.data == "sig":
                os.read(sig_r, 4096)
                _reap(children, emit)
            else:
                chunk = os.read(cmd_fd, 65536)
                if not chunk:
                    _stop(children)
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    cmd = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        # The child: drop the template's plumbing, become a worker.
                        sel.close()
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        for fd in (cmd_fd, event_fd, sig_r, sig_w):
                            os.close(fd)
                        gc.unfreeze()
                        code = 1
                        try:
                            worker_main.run(args, cmd)
                            code = 0
                        except SystemExit as e:
                            code = e.code if isinstance(e.code, int) else 0
                        except BaseException:
                            import traceback

                            traceback.print_exc()
                        finally:
                            os._exit(code)
                    children[pid] = cmd["worker_id"]
                    emit({"event": "spawned", "worker_id": cmd["worker_id"], "pid": pid})


def _reap(children: dict[int, str], emit) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        wid = children.pop(pid, None)
        emit({"event": "exited", "worker_id": wid, "pid": pid, "status": os.waitstatus_to_exitcode(status)})


def _stop(children: dict[int, str]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
