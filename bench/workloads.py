#!/usr/bin/env python3
"""Ray Core API workloads, run against a module given by name (`ray` or `asyncray`).

Only the public Ray Core API is used (init, remote functions and classes, async
actors, .options(...), get, put, wait, kill, `await ref`, util.placement_group,
shutdown), so

    python bench/workloads.py --module ray      --only tasks_sync
    python bench/workloads.py --module asyncray --group core

run identical code.  `bench/run.py` is the usual entry point: it starts one
driver process of this script per workload group and per module, guards it with
a time limit, restarts it after a crash or hang for the workloads left, and
prints the side-by-side table.  Run alone, this script runs the selected groups
one after another in this one process.

Conventions (from the team's bench_portable.py):
- every workload runs a warm-up first, then --repeat measured rounds; the
  printed value is the median of the rounds (min..max and all samples go to
  the --json file, rewritten after every figure so a crash keeps what was
  measured before it);
- output is one line per figure, "name  value  unit  # detail"; a workload
  the module can't run prints "name  ERROR  # reason" and the run goes on;
- rates are per second, GB/s is 1e9 bytes/s, MiB is 2**20 bytes;
- memory figures sum the driver and all its descendant processes (for Ray:
  gcs_server, raylet and its workers, dashboard, ...).

Every workload runs under a watchdog: past its time limit the watchdog prints
ERROR lines for it, writes the JSON and ends this process (run.py then kills
what the process left behind and goes on with the remaining workloads).
"""
from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import catalog  # noqa: E402  (bench/catalog.py)
from catalog import GROUPS, SIZES, UNSCALED  # noqa: E402

SEED_SCRIPT = os.path.join(HERE, "svd_seed.py")
MIB = 2 ** 20

# --------------------------------------------------------------------------
# Workload bodies (plain functions/classes; wrapped with rt.remote at run time
# so the same code serves every --module).
# --------------------------------------------------------------------------


def noop():
    return b"ok"


def worker_env():
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {k: os.environ.get(k) for k in keys}


def array_sum(a):
    return float(a.sum())


def svd_task(seed, n=800, sleep_s=0.25):
    """The seed example: a random matrix, its SVD, then a sleep (I/O stand-in)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    _u, s, _vh = np.linalg.svd(m)
    time.sleep(sleep_s)
    return float(s[0])


class PingActor:
    def ping(self):
        return b"ok"


class PidActor:
    def ping(self):
        return b"ok"

    def pid(self):
        return os.getpid()


class AsyncPingActor:
    async def ping(self):
        return b"ok"

    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return 1


# --------------------------------------------------------------------------
# Process helpers: CPU noise, memory of the process tree, child processes
# --------------------------------------------------------------------------


class WorkloadError(Exception):
    """A workload failed for a reason already put in words (printed without a type name)."""


def describe(exc: BaseException) -> str:
    """One line naming an exception (Ray's messages run over many lines)."""
    if isinstance(exc, WorkloadError):
        return str(exc)
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    msg = lines[0] if lines else ""
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def last_lines(text: str, n: int = 1, width: int = 300) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = " | ".join(lines[-n:])
    return out if len(out) <= width else "..." + out[-width:]


def proc_cpu_table():
    """{(pid, start time): (ppid, CPU seconds)} of every process on the machine (/proc)."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        v = s[s.rindex(")") + 2:].split()
        # fields after the name: state ppid ... utime(14) stime(15) ... starttime(22)
        out[(int(d), v[19])] = (int(v[1]), (int(v[11]) + int(v[12])) / hz)
    return out


def foreign_cpu_start():
    return time.perf_counter(), proc_cpu_table()


def foreign_cpu(start):
    """CPU seconds that processes outside this driver's tree used since `start`: the
    noise indicator of a shared machine.  Kernel threads (children of kthreadd) are
    left out: they work for everyone.  The driver is a child subreaper, so what its
    runtime leaves behind stays in its tree."""
    t0, before = start
    wall = time.perf_counter() - t0
    now = proc_cpu_table()
    kids: dict[int, list[int]] = {}
    for (pid, _st), (ppid, _cpu) in now.items():
        kids.setdefault(ppid, []).append(pid)
    mine, todo = {os.getpid()}, [os.getpid()]
    while todo:
        for c in kids.get(todo.pop(), []):
            mine.add(c)
            todo.append(c)
    foreign = 0.0
    top = []
    for key, (ppid, cpu) in now.items():
        if key[0] in mine or key[0] == 2 or ppid == 2:
            continue
        used = cpu - before.get(key, (0, 0.0))[1]
        foreign += used
        if used >= 0.05:
            try:
                with open(f"/proc/{key[0]}/comm") as f:
                    name = f.read().strip()
            except OSError:
                name = "?"
            top.append((round(used, 2), key[0], ppid, name))
    top.sort(reverse=True)
    return {"wall_s": round(wall, 2), "foreign_cpu_s": round(foreign, 2),
            "foreign_cpu_frac": round(foreign / (wall * os.cpu_count()), 3),
            "foreign_top": [f"{n} (pid {p}, ppid {pp}): {c} s" for c, p, pp, n in top[:5]]}


def proc_label(p, me_pid):
    """A short name for a process in the memory breakdown."""
    nm = p.name()
    if p.pid == me_pid:
        return "driver"
    if nm.startswith("python") or nm.startswith("ray::"):
        try:
            cmd = p.cmdline()
        except Exception:
            cmd = []
        for i, c in enumerate(cmd[:4]):
            if c in ("-m", "-c") and i + 1 < len(cmd):
                arg = cmd[i + 1]
                # "-c from multiprocessing.forkserver import main; ..." -> "-c forkserver"
                if c == "-c" and "multiprocessing." in arg:
                    arg = arg.split("multiprocessing.", 1)[1].split()[0]
                return f"{c} {arg[:40]}"
            if c.endswith(".py"):
                return os.path.basename(c)
    return nm


def tree_memory(psutil, breakdown=True):
    """RSS and PSS (bytes) summed over this process and all its descendants."""
    me = psutil.Process()
    rss = pss = 0
    counted = 0
    per: dict[str, list[int]] = {}
    for p in [me] + me.children(recursive=True):
        try:
            mi = p.memory_full_info()
            key = proc_label(p, me.pid) if breakdown else ""
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        counted += 1
        rss += mi.rss
        pss += getattr(mi, "pss", mi.rss)
        if breakdown:
            per.setdefault(key, [0, 0])
            per[key][0] += 1
            per[key][1] += mi.rss
    return {"rss": rss, "pss": pss, "processes": counted, "breakdown": per}


def tree_rss(psutil):
    """RSS (bytes) of this process and its descendants: cheap (statm), for sampling."""
    me = psutil.Process()
    total = 0
    for p in [me] + me.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def format_breakdown(per):
    return ", ".join(f"{k}x{c}={r / MIB:.0f}"
                     for k, (c, r) in sorted(per.items(), key=lambda kv: -kv[1][1]))


def pid_memory(psutil, pid):
    """(rss, pss, uss) in bytes of one process."""
    mi = psutil.Process(pid).memory_full_info()
    return mi.rss, getattr(mi, "pss", mi.rss), getattr(mi, "uss", mi.rss)


class PeakSampler(threading.Thread):
    """Samples the RSS of the process tree in the background and keeps the peak."""

    def __init__(self, psutil, interval):
        super().__init__(daemon=True)
        self.psutil = psutil
        self.interval = interval
        self.peak = 0
        self.count = 0
        self._stop_ev = threading.Event()

    def run(self):
        while True:
            v = tree_rss(self.psutil)
            self.peak = max(self.peak, v)
            self.count += 1
            if self._stop_ev.wait(self.interval):
                return

    def stop(self):
        self._stop_ev.set()
        self.join()
        self.peak = max(self.peak, tree_rss(self.psutil))


def set_child_subreaper():
    """Adopt orphaned descendants (Linux), so processes a child leaves behind can be
    found, waited for and, if they linger, ended."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def kill_tree(psutil, pid, grace=3.0):
    """Terminate a process and all its descendants (SIGTERM, then SIGKILL)."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def reap_new_children(psutil, known, grace):
    """Wait up to `grace` s for our children not in `known` (orphans adopted as
    subreaper) to exit, end the rest; returns the names of those that had to be ended."""
    me = psutil.Process()
    new = [p for p in me.children() if p.pid not in known]
    if not new:
        return []
    _gone, alive = psutil.wait_procs(new, timeout=grace)
    names = []
    for p in alive:
        try:
            names.append(p.name())
        except psutil.Error:
            pass
        kill_tree(psutil, p.pid, grace=2.0)
    return names


# --------------------------------------------------------------------------
# Watchdog
# --------------------------------------------------------------------------


class Watchdog(threading.Thread):
    """Ends the driver when a workload runs past its time limit.

    The Python thread prints an ERROR line for each workload it guards, writes
    the JSON and exits with code 3; faulthandler's C-level timer 30 s later is
    the backstop when the main thread holds the GIL."""

    def __init__(self, bench):
        super().__init__(daemon=True, name="bench-watchdog")
        self.bench = bench
        self.lock = threading.Lock()
        self.deadline = None
        self.names: list[str] = []
        self.what = ""
        self.timeout = 0.0

    def arm(self, names, timeout, what):
        with self.lock:
            self.names, self.what, self.timeout = list(names), what, timeout
            self.deadline = time.monotonic() + timeout
        faulthandler.dump_traceback_later(timeout + 30, exit=True)

    def disarm(self):
        with self.lock:
            self.deadline = None
        faulthandler.cancel_dump_traceback_later()

    def run(self):
        while True:
            time.sleep(0.5)
            with self.lock:
                due = self.deadline is not None and time.monotonic() > self.deadline
                names, what, timeout = self.names, self.what, self.timeout
            if not due:
                continue
            print(f"# watchdog: {what} still running after {timeout:.0f}s; ending the driver",
                  file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            for n in names:
                self.bench.fail(n, f"timeout: {what} still running after {timeout:.0f}s")
            self.bench.set_current(None)
            sys.stdout.flush()
            os._exit(3)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.results: dict[str, dict] = {}
        self.status: dict[str, str] = {}     # workload -> "ok" | "error"
        self.current: list[str] | None = None
        self.workload = ""                   # workload whose figures are being reported
        self.meta: dict = {}
        self.rt = None
        self.psutil = None
        self.lock = threading.RLock()
        self.watchdog = Watchdog(self)
        self.watchdog.start()
        self.subreaper = False

    # ---- reporting -------------------------------------------------------
    def report(self, name, samples, unit, detail="", higher_is_better=True, workload=None, **extra):
        samples = [float(s) for s in samples]
        med = statistics.median(samples)
        rec = {
            "value": med, "unit": unit, "samples": samples,
            "min": min(samples), "max": max(samples),
            "higher_is_better": higher_is_better,
            "workload": workload or self.workload or name,
        }
        if detail:
            rec["detail"] = detail
        rec.update(extra)
        spread = ""
        if len(samples) > 1:
            spread = f"min..max {min(samples):.4g}..{max(samples):.4g} n={len(samples)}"
        tail = "  # " + "; ".join(x for x in (spread, detail) if x) if (spread or detail) else ""
        with self.lock:
            self.results[name] = rec
            print(f"{name:<28} {med:>12.4g}  {unit}{tail}", flush=True)
            self.dump()

    def fail(self, name, reason):
        with self.lock:
            self.results[name] = {"error": reason, "workload": name}
            self.status[name] = "error"
            print(f"{name:<28} {'ERROR':>12}  # {reason}", flush=True)
            if self.args.verbose:
                traceback.print_exc()
            self.dump()

    def set_current(self, names):
        with self.lock:
            self.current = list(names) if names else None
            self.dump()

    def dump(self):
        if not self.args.json:
            return
        with self.lock:
            tmp = self.args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"meta": self.meta, "results": self.results,
                           "workloads": self.status, "current": self.current}, f, indent=1)
            os.replace(tmp, self.args.json)

    # ---- sizing / timing ---------------------------------------------------
    def n(self, name):
        base = self.args.sizes.get(name, SIZES[name])
        if name in UNSCALED or name in self.args.sizes:
            return int(base)
        return max(1, int(base * self.args.scale))

    def repeat(self, name):
        return self.args.heavy_repeat if name in catalog.HEAVY else self.args.repeat

    def rounds(self, fn, count):
        """Warm-up once, then --repeat timed rounds; returns per-second rates."""
        fn(max(1, count // 5))
        rates = []
        for _ in range(self.args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            fn(count)
            rates.append(count / (time.perf_counter() - t0))
        return rates

    def timeout(self, workload):
        return catalog.time_limit(workload, self.args.repeat, self.args.timeout)

    # ---- child processes (lifecycle, seed) --------------------------------
    def run_child(self, cmd, timeout, env=None):
        """Run a command as a fresh process; returns (rc, stdout, stderr, wall_s,
        timed_out, names of processes it left behind that had to be ended)."""
        ps = self.psutil
        if not self.subreaper:
            self.subreaper = set_child_subreaper()
        known = {p.pid for p in ps.Process().children()}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 env=env, start_new_session=True)
            try:
                p.wait(timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                kill_tree(ps, p.pid)
                p.wait()
                timed_out = True
            wall = time.perf_counter() - t0
            left = reap_new_children(ps, known, self.args.orphan_wait_s)
            out.seek(0)
            err.seek(0)
            so = out.read().decode(errors="replace")
            se = err.read().decode(errors="replace")
        return p.returncode, so, se, wall, timed_out, left

    def child_cmd(self, *extra):
        a = self.args
        return [sys.executable, os.path.abspath(__file__), "--module", a.module,
                "--num-cpus", str(a.num_cpus), "--init-kwargs", json.dumps(a.init_kwargs),
                "--orphan-wait-s", str(a.orphan_wait_s), *extra]

    # ---- memory ------------------------------------------------------------
    def memory(self, name):
        m = tree_memory(self.psutil)
        self.report(f"{name}_rss", [m["rss"] / MIB], "MiB",
                    f"{m['processes']} processes: {format_breakdown(m['breakdown'])}",
                    higher_is_better=False, processes=m["processes"], breakdown=m["breakdown"])
        self.report(f"{name}_pss", [m["pss"] / MIB], "MiB", "proportional set size, same processes",
                    higher_is_better=False)

    # ---- actors --------------------------------------------------------------
    def kill_actors(self, rt, actors, pids, wait_s=30.0):
        """kill() every actor (or drop the handles) and wait for their processes to exit."""
        kill = getattr(rt, "kill", None)
        for h in actors:
            if kill is not None:
                try:
                    kill(h)
                except Exception:
                    pass
        actors.clear()
        gc.collect()
        ps = self.psutil
        procs = []
        for pid in set(pids) - {os.getpid()}:
            try:
                procs.append(ps.Process(pid))
            except ps.Error:
                pass
        _gone, alive = ps.wait_procs(procs, timeout=wait_s)
        return len(alive)

    # ---- driving a group -------------------------------------------------------
    def steps(self, group, names):
        """[(workload names, function, time limit)] for the selected workloads of a group."""
        out = []
        if group == "lifecycle":
            sel = [w for w in GROUPS[group][1] if w in names]
            if sel:
                out.append((sel, lambda rt, f, sel=sel: self.w_lifecycle(sel), self.timeout(sel[0])))
            return out
        for w in GROUPS[group][1]:
            if w in names:
                out.append(([w], getattr(self, "w_" + w), self.timeout(w)))
        return out

    def import_module(self):
        if self.rt is None:
            t0 = time.perf_counter()
            self.rt = importlib.import_module(self.args.module)
            self.meta["import_s"] = time.perf_counter() - t0
            self.meta["module_version"] = getattr(self.rt, "__version__", "?")
            self.meta["module_file"] = getattr(self.rt, "__file__", "?")
            print(f"# {self.args.module} {self.meta['module_version']} from {self.meta['module_file']}",
                  flush=True)
        return self.rt

    def run_group(self, group, names):
        a = self.args
        init_kwargs, _ = GROUPS[group]
        steps = self.steps(group, names)
        everything = [w for s in steps for w in s[0]]
        if not everything:
            return
        rt = f = None
        if init_kwargs is not None:
            self.set_current(everything)
            self.workload = ""
            self.watchdog.arm(everything, catalog.INIT_TIMEOUT, f"{group}: import + init() + first task")
            stage = f"import {a.module}"
            try:
                rt = self.import_module()
                stage = "init()"
                kw = dict(num_cpus=a.num_cpus)
                kw.update(init_kwargs)
                kw.update(a.init_kwargs)
                t0 = time.perf_counter()
                rt.init(**kw)
                stage = "first task"
                f = rt.remote(noop)
                assert rt.get(f.remote()) == b"ok"
                self.meta.setdefault("init_s", {})[group] = time.perf_counter() - t0
                if "worker_env" not in self.meta:
                    try:
                        self.meta["worker_env"] = rt.get(rt.remote(worker_env).remote())
                    except Exception as exc:
                        self.meta["worker_env"] = describe(exc)
            except Exception as exc:
                self.watchdog.disarm()
                if a.verbose:
                    traceback.print_exc()
                for w in everything:
                    self.fail(w, f"{stage}: {describe(exc)}")
                if rt is not None and stage != f"import {a.module}" and hasattr(rt, "shutdown"):
                    self.shutdown(rt, group)
                self.set_current(None)
                return
            self.watchdog.disarm()
        for names_, fn, limit in steps:
            self.workload = names_[0]
            self.set_current(names_)
            self.watchdog.arm(names_, limit, "+".join(names_))
            try:
                fn(rt, f)
            except Exception as exc:  # keep going: a missing feature is a result too
                if a.verbose:
                    traceback.print_exc()
                for w in names_:
                    self.fail(w, describe(exc))
            finally:
                self.watchdog.disarm()
                for w in names_:
                    self.status.setdefault(w, "ok")
                self.set_current(None)
                gc.collect()
        self.workload = ""
        if init_kwargs is not None:
            self.shutdown(rt, group)

    def shutdown(self, rt, group):
        self.watchdog.arm([], catalog.SHUTDOWN_TIMEOUT, f"{group}: shutdown()")
        try:
            t0 = time.perf_counter()
            rt.shutdown()
            self.meta.setdefault("shutdown_s", {})[group] = time.perf_counter() - t0
        except Exception as exc:
            print(f"# {group}: shutdown() failed: {describe(exc)}", flush=True)
        finally:
            self.watchdog.disarm()

    def run(self, groups):
        a = self.args
        try:
            import psutil  # Ray also vendors psutil in ray/thirdparty_files
        except ImportError:
            psutil = None
        self.psutil = psutil
        self.subreaper = set_child_subreaper()
        cpu_start = foreign_cpu_start()
        self.meta.update({
            "module": a.module,
            "groups": list(groups),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "numpy": np.__version__,
            "platform": platform.platform(),
            "nproc": os.cpu_count(),
            "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
            "num_cpus": a.num_cpus, "init_kwargs": a.init_kwargs,
            "repeat": a.repeat, "heavy_repeat": a.heavy_repeat, "scale": a.scale, "quick": a.quick,
            "sizes": {w: self.n(w) for w in SIZES},
            "large_mb": a.large_mb, "idle_s": a.idle_s,
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "loadavg_start": os.getloadavg(),
        })
        print(f"# module={a.module} groups={','.join(groups)} python={self.meta['python']} "
              f"numpy={np.__version__} nproc={os.cpu_count()} num_cpus={a.num_cpus} "
              f"repeat={a.repeat} scale={a.scale}{' quick' if a.quick else ''}", flush=True)
        if psutil is None:
            for names in groups.values():
                for w in names:
                    self.fail(w, "psutil is not importable in this interpreter")
            return
        for group, names in groups.items():
            self.run_group(group, names)
        self.meta.update(foreign_cpu(cpu_start))
        print(f"# other processes used {self.meta['foreign_cpu_s']} CPU-s during the "
              f"{self.meta['wall_s']} s run ({self.meta['foreign_cpu_frac']:.1%} of the machine)", flush=True)
        self.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.meta["loadavg_end"] = os.getloadavg()
        self.dump()

    # ======================================================================
    # lifecycle: a fresh process per round
    # ======================================================================
    def w_lifecycle(self, names):
        a = self.args
        want_mem = "memory_idle" in names
        rounds = a.repeat + 1  # the first is the warm-up
        limit = catalog.round_limit("lifecycle", a.timeout)
        cmd = self.child_cmd("--lifecycle-child", "--idle-s", str(a.idle_s if want_mem else -1))
        got = []
        for i in range(rounds):
            rc, so, se, _wall, timed_out, left = self.run_child(cmd, limit)
            line = next((ln for ln in so.splitlines() if ln.startswith("LIFECYCLE")), "")
            if timed_out:
                stage = ""
                if line.startswith("LIFECYCLE_ERROR "):  # what it was doing when it was ended
                    stage = f" (in {json.loads(line.split(' ', 1)[1])['stage']})"
                raise WorkloadError(f"timeout: an init/shutdown round was still running after "
                                    f"{limit:.0f}s{stage}")
            if line.startswith("LIFECYCLE_ERROR "):
                e = json.loads(line.split(" ", 1)[1])
                raise WorkloadError(f"{e['stage']}: {e['error']}")
            if not line:
                raise WorkloadError(f"lifecycle process exited {rc}: {last_lines(se)}")
            r = json.loads(line.split(" ", 1)[1])
            r["left_behind_killed"] = left
            if i > 0:
                got.append(r)
            if "module_version" in r:
                self.meta["module_version"] = r["module_version"]
        med = lambda k: statistics.median(r[k] for r in got)  # noqa: E731
        w = "init_time"
        if w in names:
            self.report("import_time", [r["import_s"] for r in got], "s", f"import {a.module}, fresh process",
                        higher_is_better=False, workload=w)
            self.report("init_time", [r["init_time"] for r in got], "s",
                        f"init() {med('init_s'):.3f}s + first task {med('first_task_s'):.3f}s; "
                        f"fresh process per round", higher_is_better=False, workload=w,
                        init_s=med("init_s"), first_task_s=med("first_task_s"))
        w = "memory_idle"
        if w in names:
            last = got[-1]
            self.report("memory_idle_rss", [r["rss"] / MIB for r in got], "MiB",
                        f"{last['processes']} processes, idle {a.idle_s:g}s after init: "
                        f"{format_breakdown(last['breakdown'])}",
                        higher_is_better=False, workload=w, processes=last["processes"],
                        breakdown=last["breakdown"])
            self.report("memory_idle_pss", [r["pss"] / MIB for r in got], "MiB",
                        "proportional set size, same processes", higher_is_better=False, workload=w)
        w = "shutdown_time"
        if w in names:
            self.report("shutdown_time", [r["shutdown_s"] for r in got], "s", "shutdown() returns",
                        higher_is_better=False, workload=w)
            names_left = sorted({n for r in got for n in r["leftover_names"] + r["left_behind_killed"]})
            self.report("leftover_processes", [r["leftover"] for r in got], "procs",
                        f"of {got[-1]['descendants']} descendants, still alive {a.orphan_wait_s:g}s "
                        f"after shutdown()" + (f": {names_left}" if names_left else ""),
                        higher_is_better=False, workload=w)

    # ======================================================================
    # seed: the seed example as a whole process
    # ======================================================================
    def w_seed_process(self, rt, f):
        a = self.args
        k = self.n("seed_process")
        env = dict(os.environ, BENCH_MODULE=a.module, BENCH_NUM_CPUS=str(a.num_cpus),
                   BENCH_SEED_TASKS=str(k))
        limit = catalog.round_limit("seed_process", a.timeout)
        cmd = [sys.executable, SEED_SCRIPT]

        def once():
            rc, so, se, wall, timed_out, left = self.run_child(cmd, limit, env)
            if timed_out:
                raise WorkloadError(f"timeout: svd_seed.py still running after {limit:.0f}s")
            line = next((ln for ln in so.splitlines() if ln.startswith("SEED ")), "")
            if rc != 0 or not line:
                raise WorkloadError(f"svd_seed.py exited {rc}: {last_lines(se)}")
            return wall, json.loads(line[5:]), left

        once()  # warm-up (disk cache, first start of the runtime's binaries)
        t0 = time.perf_counter()
        expect = [svd_task(i) for i in range(k)]
        seq = time.perf_counter() - t0
        walls, inner, left_all = [], [], set()
        for _ in range(a.repeat):
            wall, r, left = once()
            assert np.allclose(r["largest"], expect), (r["largest"], expect)
            walls.append(wall)
            inner.append(r)
            left_all.update(left)
        med = {key: statistics.median(r[key] for r in inner)
               for key in ("import_s", "init_s", "tasks_s", "shutdown_s")}
        self.report("seed_process", walls, "s",
                    f"`python svd_seed.py`: import {med['import_s']:.2f} + init {med['init_s']:.2f} + "
                    f"{k} tasks {med['tasks_s']:.2f} + shutdown {med['shutdown_s']:.2f} s; "
                    f"sequential in one process {seq:.2f}s"
                    + (f"; left behind (ended): {sorted(left_all)}" if left_all else ""),
                    higher_is_better=False, sequential_s=seq, **med)

    # ======================================================================
    # core: the bench_portable workloads
    # ======================================================================
    # b. sequential tasks
    def w_tasks_sync(self, rt, f):
        def body(n):
            for _ in range(n):
                assert rt.get(f.remote()) == b"ok"
        self.report("tasks_sync", self.rounds(body, self.n("tasks_sync")), "tasks/s",
                    "get(f.remote()) one at a time")

    # c. submit N then get all
    def w_tasks_async(self, rt, f):
        def body(n):
            out = rt.get([f.remote() for _ in range(n)])
            assert len(out) == n and out[-1] == b"ok"
        self.report("tasks_async", self.rounds(body, self.n("tasks_async")), "tasks/s",
                    f"submit {self.n('tasks_async')} then get(list)")

    # d. one actor
    def _actor_calls(self, rt, name, handle, sync):
        def body(n):
            if sync:
                for _ in range(n):
                    assert rt.get(handle.ping.remote()) == b"ok"
            else:
                out = rt.get([handle.ping.remote() for _ in range(n)])
                assert len(out) == n and out[-1] == b"ok"
        self.report(name, self.rounds(body, self.n(name)), "calls/s",
                    "one at a time" if sync else f"submit {self.n(name)} then get(list)")

    def w_actor_calls_sync(self, rt, f):
        a = rt.remote(PingActor).remote()
        self._actor_calls(rt, "actor_calls_sync", a, True)

    def w_actor_calls_async(self, rt, f):
        a = rt.remote(PingActor).remote()
        self._actor_calls(rt, "actor_calls_async", a, False)

    def w_actor_calls_concurrent(self, rt, f):
        a = rt.remote(PingActor).options(max_concurrency=16).remote()
        self._actor_calls(rt, "actor_calls_concurrent", a, False)

    # e. async actor
    def w_async_actor_calls_sync(self, rt, f):
        a = rt.remote(AsyncPingActor).remote()
        self._actor_calls(rt, "async_actor_calls_sync", a, True)

    def w_async_actor_calls_async(self, rt, f):
        a = rt.remote(AsyncPingActor).remote()
        self._actor_calls(rt, "async_actor_calls_async", a, False)

    # f. async actor with max_concurrency=1000, 1000 x 10 ms sleeps
    def w_async_actor_concurrency(self, rt, f):
        n = self.n("async_actor_concurrency")
        a = rt.remote(AsyncPingActor).options(max_concurrency=n).remote()
        assert sum(rt.get([a.nap.remote(0.01) for _ in range(n)])) == n  # warm-up
        walls = []
        for _ in range(self.args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            assert sum(rt.get([a.nap.remote(0.01) for _ in range(n)])) == n
            walls.append(time.perf_counter() - t0)
        self.report("async_actor_concurrency", walls, "s",
                    f"{n} calls of `await asyncio.sleep(0.01)`, max_concurrency={n}; ideal 0.01 s",
                    higher_is_better=False)

    # wait() one ref at a time (cf. ray microbenchmark "single client wait 1k refs")
    def w_wait_one_by_one(self, rt, f):
        def body(n):
            pending = [f.remote() for _ in range(n)]
            while pending:
                ready, pending = rt.wait(pending, num_returns=1)
                assert len(ready) == 1
        self.report("wait_one_by_one", self.rounds(body, self.n("wait_one_by_one")), "refs/s",
                    f"submit {self.n('wait_one_by_one')}, then wait(num_returns=1) until none left")

    # g. object store
    def w_put_small(self, rt, f):
        def body(n):
            for i in range(n):
                rt.put(i)
        self.report("put_small", self.rounds(body, self.n("put_small")), "puts/s", "put(int)")

    def w_get_small(self, rt, f):
        ref = rt.put(12345)

        def body(n):
            for _ in range(n):
                assert rt.get(ref) == 12345
        self.report("get_small", self.rounds(body, self.n("get_small")), "gets/s", "get() of a put int")

    def large(self):
        if not hasattr(self, "_large"):
            self._large = np.random.default_rng(0).random(self.args.large_mb * MIB // 8)
            self._large_sum = float(self._large.sum())
        return self._large

    def w_put_large(self, rt, f):
        arr = self.large()

        def body(n):
            for _ in range(n):
                rt.put(arr)
        rates = self.rounds(body, self.n("put_large"))
        gbs = [r * arr.nbytes / 1e9 for r in rates]
        self.report("put_large", gbs, "GB/s", f"put() of a {self.args.large_mb} MiB float64 array, ref dropped")

    def w_get_large(self, rt, f):
        large = self.large()
        ref = rt.put(large)
        got = rt.get(ref)
        assert got.shape == large.shape and np.array_equal(got, large)
        zero_copy = not got.flags.writeable or not got.flags.owndata
        del got
        lat = []

        def body(n):
            for _ in range(n):
                t0 = time.perf_counter()
                x = rt.get(ref)
                lat.append(time.perf_counter() - t0)
                assert x.shape == large.shape
                del x
        self.rounds(body, self.n("get_large"))
        keep = lat[-self.n("get_large") * self.args.repeat:]
        ms = [v * 1e3 for v in keep]
        p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0]
        self.report("get_large", [statistics.median(ms)], "ms",
                    f"get() of a stored {self.args.large_mb} MiB array, median of {len(ms)} calls, "
                    f"p90 {p90:.3g} ms; zero-copy view: {zero_copy}",
                    higher_is_better=False, zero_copy=zero_copy)

    # h. large arguments
    def w_pass_large_arg(self, rt, f):
        large = self.large()
        g = rt.remote(array_sum)
        ref = rt.put(large)

        def body(n):
            for _ in range(n):
                assert np.isclose(rt.get(g.remote(ref)), self._large_sum, rtol=1e-9)
        t0 = time.perf_counter()
        large.sum()
        floor = time.perf_counter() - t0
        self.report("pass_large_arg", self.rounds(body, self.n("pass_large_arg")), "tasks/s",
                    f"get(sum.remote(ref)) with ref = put({self.args.large_mb} MiB array); "
                    f"local a.sum() alone takes {floor * 1e3:.1f} ms")

    def w_pass_large_value(self, rt, f):
        large = self.large()
        g = rt.remote(array_sum)

        def body(n):
            for _ in range(n):
                assert np.isclose(rt.get(g.remote(large)), self._large_sum, rtol=1e-9)
        self.report("pass_large_value", self.rounds(body, self.n("pass_large_value")), "tasks/s",
                    f"get(sum.remote(array)) passing the {self.args.large_mb} MiB array by value")

    # i. the seed example inside one driver
    def w_seed_svd(self, rt, f):
        k = self.n("seed_svd")
        g = rt.remote(svd_task)
        # warm-up: every worker imports numpy and runs one small SVD
        rt.get([g.remote(i, 200, 0.0) for i in range(self.args.num_cpus * 2)])
        t0 = time.perf_counter()
        expect = [svd_task(i) for i in range(k)]
        seq = time.perf_counter() - t0
        walls = []
        for _ in range(self.args.repeat):
            gc.collect()
            t0 = time.perf_counter()
            got = rt.get([g.remote(i) for i in range(k)])
            walls.append(time.perf_counter() - t0)
            assert np.allclose(got, expect), (got, expect)
        med = statistics.median(walls)
        self.report("seed_svd_sequential", [seq], "s",
                    f"{k} x (800x800 standard_normal + np.linalg.svd + sleep 0.25) in the driver",
                    higher_is_better=False)
        self.report("seed_svd", walls, "s",
                    f"same {k} as remote tasks, num_cpus={self.args.num_cpus}; speedup {seq / med:.2f}x "
                    f"(ideal {min(k, self.args.num_cpus)}x)", higher_is_better=False,
                    sequential_s=seq, speedup=seq / med)

    # j. awaiting refs from asyncio
    def w_await_style(self, rt, f):
        async def body_async(n):
            for _ in range(n):
                assert await f.remote() == b"ok"

        def body(n):
            asyncio.run(body_async(n))
        self.report("await_style", self.rounds(body, self.n("await_style")), "tasks/s",
                    "inside asyncio.run(): `await f.remote()` one at a time")

    def w_await_gather(self, rt, f):
        async def body_async(n):
            out = await asyncio.gather(*[f.remote() for _ in range(n)])
            assert len(out) == n and out[-1] == b"ok"

        def body(n):
            asyncio.run(body_async(n))
        self.report("await_gather", self.rounds(body, self.n("await_gather")), "tasks/s",
                    f"inside asyncio.run(): await asyncio.gather({self.n('await_gather')} x f.remote())")

    def w_memory_end(self, rt, f):
        self.memory("memory_end")

    # ======================================================================
    # tasks_100k: many pending tasks
    # ======================================================================
    def w_tasks_100k(self, rt, f):
        n = self.n("tasks_100k")
        ps = self.psutil

        def once(count):
            t0 = time.perf_counter()
            refs = [f.remote() for _ in range(count)]
            t1 = time.perf_counter()
            out = rt.get(refs)
            t2 = time.perf_counter()
            assert len(out) == count and out[-1] == b"ok"
            del refs, out
            return t2 - t0, t1 - t0

        once(max(1, n // 10))  # warm-up
        walls, submits, peaks, bases = [], [], [], []
        for _ in range(self.repeat("tasks_100k")):
            gc.collect()
            bases.append(tree_rss(ps))
            sampler = PeakSampler(ps, self.args.sample_interval)
            sampler.start()
            try:
                wall, sub = once(n)
            finally:
                sampler.stop()
            walls.append(wall)
            submits.append(sub)
            peaks.append(sampler.peak)
        med = statistics.median(walls)
        self.report("tasks_100k", walls, "s",
                    f"{n} tiny tasks submitted, then get(list): {n / med:.0f} tasks/s; "
                    f"submitting took {statistics.median(submits):.2f}s", higher_is_better=False,
                    n=n, submit_s=statistics.median(submits))
        self.report("tasks_100k_peak_rss", [p / MIB for p in peaks], "MiB",
                    f"peak RSS of driver + descendants, sampled every {self.args.sample_interval:g}s; "
                    f"{statistics.median(bases) / MIB:.0f} MiB before submitting", higher_is_better=False,
                    n=n, before_mib=statistics.median(bases) / MIB)

    # ======================================================================
    # actors
    # ======================================================================
    def w_actor_create_first_call(self, rt, f):
        n = self.n("actor_create_first_call")
        cls = rt.remote(PidActor)

        def once():
            t0 = time.perf_counter()
            h = cls.remote()
            assert rt.get(h.ping.remote()) == b"ok"
            dt = time.perf_counter() - t0
            pid = rt.get(h.pid.remote())
            self.kill_actors(rt, [h], [pid])
            return dt

        for _ in range(2):  # warm-up
            once()
        samples = [once() * 1e3 for _ in range(n)]
        self.report("actor_create_first_call", samples, "ms",
                    f"median of {n} sequential `A.remote()` + get(first call); actor killed after each",
                    higher_is_better=False)

    def w_actor_idle(self, rt, f):
        n = self.n("actor_idle")
        ps = self.psutil
        cls = rt.remote(PidActor).options(num_cpus=0)
        actors = [cls.remote() for _ in range(n)]
        pids = rt.get([h.pid.remote() for h in actors])
        time.sleep(self.args.idle_s)
        distinct = sorted(set(pids))
        mem = [pid_memory(ps, pid) for pid in distinct]
        if len(distinct) == n:
            rss = [m[0] / MIB for m in mem]
            pss = [m[1] / MIB for m in mem]
            uss = [m[2] / MIB for m in mem]
        else:  # actors share processes: charge each actor its share
            rss = [sum(m[0] for m in mem) / n / MIB]
            pss = [sum(m[1] for m in mem) / n / MIB]
            uss = [sum(m[2] for m in mem) / n / MIB]
        note = f"{n} idle actors (num_cpus=0) in {len(distinct)} processes"
        if os.getpid() in distinct:
            note += " (one is the driver!)"
        self.report("actor_idle_rss", rss, "MiB",
                    f"RSS of one idle actor's process, {self.args.idle_s:g}s after its first call; {note}",
                    higher_is_better=False)
        self.report("actor_idle_pss", pss, "MiB",
                    f"PSS of the same; USS median {statistics.median(uss):.1f} MiB", higher_is_better=False,
                    uss_mib=statistics.median(uss))
        self.kill_actors(rt, actors, pids)

    def _actor_batch(self, rt, n, measure):
        """Create n actors (num_cpus=0) at once, one call each; returns (seconds, memory info)."""
        ps = self.psutil
        cls = rt.remote(PidActor).options(num_cpus=0)
        before = tree_memory(ps, breakdown=False)["pss"] if measure else 0
        t0 = time.perf_counter()
        actors = [cls.remote() for _ in range(n)]
        pids = rt.get([h.pid.remote() for h in actors])
        dt = time.perf_counter() - t0
        info = {}
        if measure:
            distinct = sorted(set(pids) - {os.getpid()})
            pss = 0
            for pid in distinct:
                try:
                    pss += pid_memory(ps, pid)[1]
                except ps.Error:
                    pass
            after = tree_memory(ps, breakdown=False)["pss"]
            info = {"pss_per_actor": pss / n, "growth": after - before, "processes": len(distinct)}
        t1 = time.perf_counter()
        alive = self.kill_actors(rt, actors, pids, wait_s=60.0)
        info["teardown_s"] = time.perf_counter() - t1
        info["alive_after_kill"] = alive
        return dt, info

    def w_actors_50(self, rt, f):
        n = self.n("actors_50")
        self._actor_batch(rt, max(1, n // 5), False)  # warm-up
        walls, per, growth, procs = [], [], [], []
        for _ in range(self.args.repeat):
            gc.collect()
            dt, info = self._actor_batch(rt, n, True)
            walls.append(dt)
            per.append(info["pss_per_actor"] / MIB)
            growth.append(info["growth"] / MIB)
            procs.append(info["processes"])
        self.report("actors_50", walls, "s",
                    f"{n} actors (num_cpus=0) created at once, then one call each; "
                    f"{statistics.median(walls) / n * 1e3:.0f} ms per actor", higher_is_better=False, n=n)
        self.report("actors_50_pss_per_actor", per, "MiB",
                    f"PSS of the actors' {statistics.median(procs):.0f} processes / {n}; "
                    f"PSS growth of the whole tree / {n}: {statistics.median(growth) / n:.1f} MiB",
                    higher_is_better=False, n=n, growth_per_actor_mib=statistics.median(growth) / n)

    def w_actors_1000(self, rt, f):
        n = self.n("actors_1000")
        self._actor_batch(rt, min(10, n), False)  # warm-up
        walls, growth, per, procs, teardown = [], [], [], [], []
        for _ in range(self.repeat("actors_1000")):
            gc.collect()
            dt, info = self._actor_batch(rt, n, True)
            walls.append(dt)
            growth.append(info["growth"] / MIB)
            per.append(info["pss_per_actor"] / MIB)
            procs.append(info["processes"])
            teardown.append(info["teardown_s"])
        med = statistics.median(walls)
        self.report("actors_1000", walls, "s",
                    f"{n} actors (num_cpus=0) alive at once, each answered one call; "
                    f"teardown (kill all) {statistics.median(teardown):.1f}s", higher_is_better=False, n=n)
        self.report("actors_1000_per_actor", [w / n * 1e3 for w in walls], "ms",
                    f"time per actor at n={n}", higher_is_better=False, n=n, per_unit=True)
        self.report("actors_1000_pss_growth", growth, "MiB",
                    f"PSS of driver + descendants with {n} actors alive minus before", higher_is_better=False, n=n)
        self.report("actors_1000_pss_per_actor", [g / n for g in growth], "MiB",
                    f"tree PSS growth / {n}; the actors' {statistics.median(procs):.0f} processes' own PSS "
                    f"/ {n}: {statistics.median(per):.1f} MiB", higher_is_better=False, n=n, per_unit=True)

    # ======================================================================
    # resources: placement groups, custom resources
    # ======================================================================
    def w_pg_rate(self, rt, f):
        util = importlib.import_module(self.args.module + ".util")
        placement_group = util.placement_group
        remove_placement_group = util.remove_placement_group

        def body(n):
            for _ in range(n):
                pg = placement_group([{"CPU": 1}])
                rt.get(pg.ready())
                remove_placement_group(pg)
        self.report("pg_rate", self.rounds(body, self.n("pg_rate")), "pgs/s",
                    "placement_group([{'CPU': 1}]), get(pg.ready()), remove_placement_group(), one at a time")

    def w_tasks_custom_resource(self, rt, f):
        g = f.options(resources={"foo": 0.001})

        def body(n):
            out = rt.get([g.remote() for _ in range(n)])
            assert len(out) == n and out[-1] == b"ok"
        n = self.n("tasks_custom_resource")
        self.report("tasks_custom_resource", self.rounds(body, n), "tasks/s",
                    f"submit {n} tasks with resources={{'foo': 0.001}} (init resources={{'foo': 1}}), "
                    f"then get(list)")


# --------------------------------------------------------------------------
# Lifecycle child: one fresh process = import, init, first task, idle memory, shutdown
# --------------------------------------------------------------------------


def lifecycle_child(a):
    stage = f"import {a.module}"
    rt = None
    try:
        t0 = time.perf_counter()
        rt = importlib.import_module(a.module)
        t1 = time.perf_counter()
        import psutil
        stage = "init()"
        rt.init(num_cpus=a.num_cpus, **a.init_kwargs)
        t2 = time.perf_counter()
        stage = "first task"
        f = rt.remote(noop)
        assert rt.get(f.remote()) == b"ok"
        t3 = time.perf_counter()
        out = {"module_version": getattr(rt, "__version__", "?"), "import_s": t1 - t0,
               "init_s": t2 - t1, "first_task_s": t3 - t2, "init_time": t3 - t1}
        if a.idle_s >= 0:
            stage = "idle memory"
            time.sleep(a.idle_s)
            out.update(tree_memory(psutil))
        me = psutil.Process()
        kids = me.children(recursive=True)
        out["descendants"] = len(kids)
        stage = "shutdown()"
        t4 = time.perf_counter()
        rt.shutdown()
        out["shutdown_s"] = time.perf_counter() - t4
        _gone, alive = psutil.wait_procs(kids, timeout=a.orphan_wait_s)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        names = []
        for p in alive:
            try:
                names.append(p.name())
            except psutil.Error:
                pass
        out["leftover"] = len(alive)
        out["leftover_names"] = sorted(set(names))
        print("LIFECYCLE " + json.dumps(out), flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - report whatever went wrong
        traceback.print_exc()
        print("LIFECYCLE_ERROR " + json.dumps({"stage": stage, "error": describe(exc)}), flush=True)
        if rt is not None and not stage.startswith("import") and stage != "shutdown()":
            try:
                rt.shutdown()
            except BaseException:  # noqa: BLE001
                pass
        return 1


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default="ray", help="module providing the Ray Core API (ray, asyncray)")
    p.add_argument("--group", help=f"run only this group's workloads: {', '.join(GROUPS)}")
    p.add_argument("--only", default="", help="comma-separated workloads, figures or groups")
    p.add_argument("--skip", default="", help="comma-separated workloads, figures or groups")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--json", help="write results (all samples) and progress to this JSON file")
    p.add_argument("--repeat", type=int, default=None, help="timed rounds per workload (median reported); "
                   "default 3, 1 with --quick")
    p.add_argument("--heavy-repeat", type=int, default=1,
                   help=f"timed rounds for the heavy workloads {sorted(catalog.HEAVY)}")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the scalable N sizes")
    p.add_argument("--size", action="append", default=[], metavar="NAME=N", help="set one size")
    p.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    p.add_argument("--large-mb", type=int, default=None, help="size of the large array in MiB (100; 20 quick)")
    p.add_argument("--init-kwargs", default="{}", help="JSON dict of extra init() kwargs")
    p.add_argument("--idle-s", type=float, default=None, help="idle time before idle memory (3; 1 quick)")
    p.add_argument("--orphan-wait-s", type=float, default=5.0,
                   help="how long to wait for child processes to exit after shutdown()")
    p.add_argument("--sample-interval", type=float, default=0.2, help="RSS sampling period of tasks_100k (s)")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="time limit (s) for every workload, or a round of lifecycle/seed_process; "
                        "default per workload (see catalog.py)")
    p.add_argument("--list", action="store_true", help="list groups, workloads and sizes")
    p.add_argument("--lifecycle-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    a.init_kwargs = json.loads(a.init_kwargs)
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.large_mb is None:
        a.large_mb = catalog.QUICK_LARGE_MB if a.quick else 100
    if a.idle_s is None:
        a.idle_s = catalog.QUICK_IDLE_S if a.quick else 3.0
    a.sizes = dict(catalog.QUICK_SIZES) if a.quick else {}
    for s in a.size:
        k, _, v = s.partition("=")
        if k not in SIZES:
            p.error(f"unknown size {k!r}; known: {sorted(SIZES)}")
        a.sizes[k] = int(v)
    return p, a


def main(argv=None):
    p, a = parse_args(argv)
    if a.lifecycle_child:
        return lifecycle_child(a)
    if a.list:
        for g, (init_kwargs, ws) in GROUPS.items():
            print(f"{g}  (init {'none' if init_kwargs is None else init_kwargs})")
            for w in ws:
                print(f"    {w:<26} {SIZES.get(w, '')}")
        return 0
    selected, unknown = catalog.select(a.only, a.skip)
    if unknown:
        p.error(f"unknown workloads: {unknown}; see --list")
    if a.group:
        if a.group not in GROUPS:
            p.error(f"unknown group {a.group!r}; known: {list(GROUPS)}")
        selected = [w for w in selected if catalog.GROUP_OF[w] == a.group]
    groups: dict[str, list[str]] = {}
    for w in selected:
        groups.setdefault(catalog.GROUP_OF[w], []).append(w)
    try:  # 1,000 actors need many sockets and pipes
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except Exception:
        pass
    t0 = time.perf_counter()
    Bench(a).run(groups)
    print(f"# total {time.perf_counter() - t0:.1f}s", flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
