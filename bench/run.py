#!/usr/bin/env python3
"""asyncray benchmark suite: the entry point.

    python bench/run.py                    # asyncray from this checkout
    python bench/run.py --compare ray      # and Ray 2.60 (bench/.venv-ray), side by side
    python bench/run.py --compare ray --quick --only core,actors

For each workload group (see bench/catalog.py) and each module, a fresh driver
process `<python> bench/workloads.py --module M --group G ...` runs the group's
workloads.  The driver of asyncray is the project's interpreter (.venv) with the
checkout root on PYTHONPATH; Ray's is the one of bench/.venv-ray, created on
first use (Ray is never a project dependency).  Groups of the two modules run
interleaved, so both see the machine in much the same state.

Each workload is guarded by the driver's watchdog and each driver by a time
limit here; a driver that crashes or hangs is ended with everything it started,
its unfinished workload is reported as ERROR and a new driver goes on with the
workloads left.  Results (all samples, per-group metadata, the table) go to
bench/results/<timestamp>.json; drivers' stderr to bench/results/<timestamp>-logs/.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import catalog  # noqa: E402

WORKLOADS = os.path.join(HERE, "workloads.py")
RAY_VENV = os.path.join(HERE, ".venv-ray")
RESULTS = os.path.join(HERE, "results")
LOCK_FILE = "/tmp/bench.lock"   # the same lock as `flock /tmp/bench.lock python bench_portable.py`
ORPHAN_GRACE_S = 10.0


OUT = sys.stdout   # human-readable output; stderr when the JSON goes to stdout


def log(msg):
    print(msg, file=OUT, flush=True)


# --------------------------------------------------------------------------
# Interpreters
# --------------------------------------------------------------------------


def ray_venv_python(version_spec: str) -> str:
    """bench/.venv-ray/bin/python with ray, numpy and psutil; created on first use."""
    py = os.path.join(RAY_VENV, "bin", "python")
    probe = [py, "-c", "import ray, numpy, psutil; print(ray.__version__)"]
    if os.path.exists(py) and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    log(f"# setting up {os.path.relpath(RAY_VENV, ROOT)} with ray=={version_spec} (first use)")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", RAY_VENV])
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.call(pip + [f"ray=={version_spec}", "numpy", "psutil"]) != 0:
        version = nearest_ray_version(py, version_spec)
        log(f"# ray=={version_spec} is not available; installing the nearest 2.x: ray=={version}")
        subprocess.check_call(pip + [f"ray=={version}", "numpy", "psutil"])
    subprocess.check_call(probe)
    return py


def nearest_ray_version(py: str, spec: str) -> str:
    out = subprocess.run([py, "-m", "pip", "index", "versions", "ray"], capture_output=True, text=True).stdout
    m = re.search(r"Available versions:\s*(.*)", out)
    if not m:
        raise SystemExit(f"cannot list ray versions with pip:\n{out}")
    want = tuple(int(x) for x in re.findall(r"\d+", spec)[:2])
    versions = []
    for v in m.group(1).split(","):
        parts = re.match(r"\s*(\d+)\.(\d+)\.(\d+)\s*$", v)
        if parts and int(parts.group(1)) == 2:
            versions.append(tuple(int(x) for x in parts.groups()))
    if not versions:
        raise SystemExit("no ray 2.x release is available")
    # nearest minor version; on a tie the older one; then the newest patch release
    best = min(versions, key=lambda t: (abs(t[1] - want[1]), t[1] > want[1], -t[2]))
    return ".".join(map(str, best))


def python_for(module: str, a) -> str:
    if module == "ray":
        return ray_venv_python(a.ray_version)
    if a.python:
        return a.python
    venv = os.path.join(ROOT, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def driver_env(module: str) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Ray's usage-stats reporter would try to reach the internet: this machine has none.
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if module != "ray":
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = ROOT + (os.pathsep + old if old else "")
    return env


# --------------------------------------------------------------------------
# Processes: /proc based, so run.py needs only the standard library
# --------------------------------------------------------------------------


def set_child_subreaper():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def _stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def _name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def descendants(pid):
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                kids.setdefault(st[1], []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid):
    """False once a process is gone or a zombie (reaping it if it is our child)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def end_processes(pids, grace=5.0):
    """SIGTERM, wait, SIGKILL.  Only ever called on processes this run started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        pids = wait_gone(pids, grace)
        if not pids:
            return


def clean_orphans(what):
    """End what a finished driver left behind (adopted by us as subreaper)."""
    left = descendants(os.getpid())
    if not left:
        return
    left = wait_gone(left, ORPHAN_GRACE_S)
    if left:
        names = sorted({_name(p) for p in left})
        end_processes(left)
        log(f"# ended {len(left)} processes that {what} left behind: {', '.join(names)}")


# --------------------------------------------------------------------------
# Running one group of one module
# --------------------------------------------------------------------------


class Runner:
    def __init__(self, a, stamp):
        self.a = a
        self.stamp = stamp
        self.logdir = os.path.join(RESULTS, f"{stamp}-logs")
        self.results: dict[str, dict] = {}    # module -> figure -> record
        self.meta: dict[str, dict] = {}       # module -> {"python", "groups": {group: driver meta}}
        self.current = None                   # the running driver (for Ctrl-C)

    def driver_args(self, module):
        a = self.a
        args = ["--module", module, "--repeat", str(a.repeat), "--heavy-repeat", str(a.heavy_repeat),
                "--scale", str(a.scale)]
        if a.quick:
            args.append("--quick")
        if a.timeout:
            args += ["--timeout", str(a.timeout)]
        if a.large_mb:
            args += ["--large-mb", str(a.large_mb)]
        if a.idle_s is not None:
            args += ["--idle-s", str(a.idle_s)]
        sizes = list(a.size)
        if module == "ray" and not any(s.startswith("actors_1000=") for s in sizes):
            full = (catalog.QUICK_SIZES if a.quick else catalog.SIZES)["actors_1000"]
            sizes.append(f"actors_1000={min(full, a.ray_actors_cap)}")
        for s in sizes:
            args += ["--size", s]
        kw = a.ray_init_kwargs if module == "ray" else a.init_kwargs
        if kw:
            args += ["--init-kwargs", kw]
        if a.verbose:
            args.append("--verbose")
        return args

    def run_group(self, module, python, group, names):
        a = self.a
        res = self.results.setdefault(module, {})
        gmeta = self.meta.setdefault(module, {"python": python, "groups": {}})["groups"]
        remaining = list(names)
        attempt = 0
        while remaining:
            attempt += 1
            tag = f"{module}-{group}" + (f"-{attempt}" if attempt > 1 else "")
            progress_path = os.path.join(self.logdir, tag + ".json")
            log_path = os.path.join(self.logdir, tag + ".log")
            cmd = [python, WORKLOADS, *self.driver_args(module), "--group", group,
                   "--only", ",".join(remaining), "--json", progress_path]
            limit = (sum(catalog.time_limit(w, a.repeat, a.timeout) for w in remaining)
                     + catalog.INIT_TIMEOUT + catalog.SHUTDOWN_TIMEOUT + 60)
            if attempt > 1:
                log(f"# new {module} driver for the rest of {group}: {', '.join(remaining)}")
            if a.verbose:
                log("# " + shlex.join(cmd))
            with open(log_path, "w") as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                        cwd=ROOT, env=driver_env(module), start_new_session=True,
                                        text=True, bufsize=1)
                self.current = proc
                reader = threading.Thread(target=self._echo, args=(proc.stdout, log_path), daemon=True)
                reader.start()
                timed_out = False
                try:
                    proc.wait(limit)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    end_processes([proc.pid] + descendants(proc.pid))
                    proc.wait()
                self.current = None
            clean_orphans(f"the {module} {group} driver")
            reader.join(2.0)
            prog = {}
            try:
                with open(progress_path) as f:
                    prog = json.load(f)
            except (OSError, ValueError):
                pass
            for name, rec in prog.get("results", {}).items():
                rec["group"] = group
                res[name] = rec
            if prog.get("meta"):
                gmeta[group if attempt == 1 else f"{group}#{attempt}"] = prog["meta"]
            done = set(prog.get("workloads", {}))
            current = [w for w in (prog.get("current") or []) if w not in done]
            rc = proc.returncode
            if timed_out:
                why = f"timeout: the driver was still running after {limit:.0f}s and was ended"
            elif rc != 0:
                how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                why = f"the driver died ({how}); see {os.path.relpath(log_path, ROOT)}"
                tail = _tail(log_path)
                if tail:
                    why += f": {tail}"
            else:
                why = "the driver ended without running it"
            if rc == 0 and not timed_out:
                lost = [w for w in remaining if w not in done]
                for w in lost:
                    self.error(module, w, why, group)
                break
            for w in current:
                self.error(module, w, why, group)
            before = len(remaining)
            remaining = [w for w in remaining if w not in done and w not in current]
            if remaining and len(remaining) == before:  # no progress: don't loop
                for w in remaining:
                    self.error(module, w, why, group)
                break

    FIGURE = re.compile(r"^(#|\S+\s+(ERROR|[-+]?(\d|inf|nan)\S*)\s)")

    def _echo(self, stream, log_path):
        """Print the driver's figure and comment lines; anything else its runtime
        prints (e.g. Ray's forwarded worker logs) goes to the driver's log."""
        with open(log_path, "a") as extra:
            for line in stream:
                if self.FIGURE.match(line):
                    OUT.write(line)
                    OUT.flush()
                else:
                    extra.write("[stdout] " + line)
                    extra.flush()

    def error(self, module, workload, reason, group):
        self.results.setdefault(module, {})[workload] = {"error": reason, "workload": workload, "group": group}
        log(f"{workload:<28} {'ERROR':>12}  # {reason}")


def _tail(path):
    """The gist of a dead driver's stderr: faulthandler's fatal error and innermost
    frame, or the last line the driver itself wrote."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if ln.strip() and not ln.startswith("[stdout] ")]
    except OSError:
        return ""
    for i, ln in enumerate(lines):
        if ln.startswith("Fatal Python error"):
            where = next((x.strip() for x in lines[i + 1:] if x.strip().startswith("File ")), "")
            return f"{ln.strip()}{'; ' + where if where else ''}"[:300]
    return lines[-1].strip()[-300:] if lines else ""


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


def build_table(modules, results):
    order: dict[str, tuple] = {}
    for m in modules:
        for i, (name, rec) in enumerate(results.get(m, {}).items()):
            w = rec.get("workload", name)
            key = (catalog.ALL_WORKLOADS.index(w) if w in catalog.ALL_WORKLOADS else 999, i)
            order[name] = min(order.get(name, key), key)
    # a workload that failed on one side shows as ERROR in its figures' rows
    has_figures = {rec.get("workload") for m in modules for rec in results.get(m, {}).values() if "value" in rec}
    rows = []
    for name in sorted(order, key=order.get):
        recs = {m: results.get(m, {}).get(name) for m in modules}
        if all(r is None or "error" in r for r in recs.values()) and name in has_figures:
            continue
        any_rec = next(r for r in recs.values() if r is not None)
        w = any_rec.get("workload", name)
        row = {"name": name, "workload": w, "unit": any_rec.get("unit", ""), "values": {}, "errors": {},
               "n": {}}
        for m in modules:
            r = recs[m]
            if r is None:
                r = results.get(m, {}).get(w)
            if r is None:
                row["values"][m] = None
            elif "error" in r:
                row["values"][m] = "ERROR"
                row["errors"][m] = r["error"]
            else:
                row["values"][m] = r["value"]
                if "n" in r:
                    row["n"][m] = r["n"]
                row["higher_is_better"] = r.get("higher_is_better", True)
                row["unit"] = r.get("unit", row["unit"])
                row["per_unit"] = r.get("per_unit", False)
        row["ratio"], row["note"] = ratio(modules, row)
        rows.append(row)
    return rows


def ratio(modules, row):
    """asyncray-vs-other ratio oriented so that > 1 means the first module is better."""
    if len(modules) < 2:
        return None, ""
    x, y = (row["values"].get(m) for m in modules[:2])
    if not isinstance(x, float) or not isinstance(y, float):
        return None, ""
    nx, ny = (row["n"].get(m) for m in modules[:2])
    note = ""
    if nx is not None and ny is not None and nx != ny:
        note = f"n {nx} vs {ny}"
        if not row.get("per_unit"):
            return None, note
    better, worse = (x, y) if row.get("higher_is_better", True) else (y, x)
    if worse == 0:
        return (1.0 if better == 0 else float("inf")), note
    return better / worse, note


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


def print_table(modules, rows):
    head = ["workload", *modules] + (["ratio"] if len(modules) > 1 else []) + ["unit", ""]
    body = []
    for r in rows:
        cells = [r["name"], *(fmt(r["values"][m]) for m in modules)]
        if len(modules) > 1:
            cells.append("-" if r["ratio"] is None else ("inf" if r["ratio"] == float("inf")
                                                          else f"{r['ratio']:.2f}x"))
        cells += [r["unit"], r["note"]]
        body.append(cells)
    widths = [max(len(str(c[i])) for c in [head] + body) for i in range(len(head))]
    right = set(range(1, len(modules) + (2 if len(modules) > 1 else 1)))

    def line(cells):
        return "  ".join(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()
    log("")
    if len(modules) > 1:
        log(f"# ratio > 1 means {modules[0]} is better ({modules[1]}/{modules[0]} for times and sizes, "
            f"{modules[0]}/{modules[1]} for rates)")
    log(line(head))
    log(line(["-" * w for w in widths]))
    for cells in body:
        log(line(cells))
    for m in modules:
        reasons: dict[str, list[str]] = {}
        for r in rows:
            if m in r["errors"] and r["workload"] not in reasons.get(r["errors"][m], []):
                reasons.setdefault(r["errors"][m], []).append(r["workload"])
        for why, ws in reasons.items():
            log(f"# {m} ERROR ({len(ws)}: {', '.join(ws[:6])}{', ...' if len(ws) > 6 else ''}): {why}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default="asyncray", help="module under test (default asyncray)")
    p.add_argument("--compare", metavar="MODULE", help="also run the same workloads against MODULE "
                   "(ray: Ray in bench/.venv-ray) and print them side by side")
    p.add_argument("--only", default="", help="comma-separated workloads, figures or groups")
    p.add_argument("--skip", default="", help="comma-separated workloads, figures or groups")
    p.add_argument("--repeat", type=int, default=None, help="measured rounds per workload after the warm-up "
                   "(median reported); default 3, 1 with --quick")
    p.add_argument("--heavy-repeat", type=int, default=1,
                   help=f"measured rounds of {', '.join(sorted(catalog.HEAVY))} (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the scalable sizes (see --list)")
    p.add_argument("--size", action="append", default=[], metavar="NAME=N", help="set one size")
    p.add_argument("--quick", action="store_true", help="small sizes and one round: a smoke run (a few minutes)")
    p.add_argument("--json", metavar="PATH",
                   help="write the JSON results here instead of bench/results/<timestamp>.json ('-': stdout)")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="time limit (s) per workload (per round for lifecycle/seed_process); default per workload")
    p.add_argument("--large-mb", type=int, default=0, help="size of the large array (default 100 MiB, 20 quick)")
    p.add_argument("--idle-s", type=float, default=None, help="idle seconds before idle memory is measured")
    p.add_argument("--python", help="interpreter for --module when it is not ray (default: .venv/bin/python)")
    p.add_argument("--ray-version", default="2.60.*", help="ray version for bench/.venv-ray (default 2.60.*)")
    p.add_argument("--ray-actors-cap", type=int, default=catalog.RAY_ACTORS_1000_CAP,
                   help="actors_1000 count for ray, so that it fits the machine (default %(default)s)")
    p.add_argument("--init-kwargs", default="", help="JSON dict of extra init() kwargs for --module")
    p.add_argument("--ray-init-kwargs", default="",
                   help="JSON dict of extra init() kwargs for ray, e.g. '{\"include_dashboard\": false}'")
    p.add_argument("--no-lock", action="store_true", help=f"don't wait for {LOCK_FILE}")
    p.add_argument("--list", action="store_true", help="list groups, workloads and sizes")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    selected, unknown = catalog.select(a.only, a.skip)
    if unknown:
        p.error(f"unknown workloads: {unknown}; see --list")
    if not selected:
        p.error("no workload selected")
    for s in a.size:
        if s.partition("=")[0] not in catalog.SIZES:
            p.error(f"unknown size {s!r}; known: {sorted(catalog.SIZES)}")
    a.selected = selected
    return a


def main(argv=None):
    global OUT
    a = parse_args(argv)
    if a.json == "-":
        OUT = sys.stderr
    if a.list:
        sizes = catalog.QUICK_SIZES if a.quick else catalog.SIZES
        for g, (init_kwargs, ws) in catalog.GROUPS.items():
            log(f"{g}  (init: {'none, fresh processes' if init_kwargs is None else dict(num_cpus=2, **init_kwargs)})")
            for w in ws:
                log(f"    {w:<26} {sizes.get(w, '')}")
        return 0
    modules = [a.module] + ([a.compare] if a.compare and a.compare != a.module else [])
    pythons = {m: python_for(m, a) for m in modules}

    lock = None
    if not a.no_lock:
        lock = open(LOCK_FILE, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"# waiting for {LOCK_FILE}: another benchmark is running")
            fcntl.flock(lock, fcntl.LOCK_EX)
    set_child_subreaper()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    runner = Runner(a, stamp)
    os.makedirs(runner.logdir, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for w in a.selected:
        groups.setdefault(catalog.GROUP_OF[w], []).append(w)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    log(f"# bench: {', '.join(f'{m} ({os.path.relpath(pythons[m], ROOT)})' for m in modules)}; "
        f"groups {', '.join(groups)}; repeat {a.repeat}, scale {a.scale}{', quick' if a.quick else ''}")
    t0 = time.monotonic()
    interrupted = False
    try:
        for group, names in groups.items():
            for m in modules:
                log(f"\n## {group} · {m}")
                runner.run_group(m, pythons[m], group, names)
    except KeyboardInterrupt:
        interrupted = True
        if runner.current is not None:
            end_processes([runner.current.pid] + descendants(runner.current.pid))
        clean_orphans("the interrupted driver")
        log("\n# interrupted: the table and JSON hold what was measured so far")

    rows = build_table(modules, runner.results)
    print_table(modules, rows)
    out = {
        "meta": {
            "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_s": round(time.monotonic() - t0, 1), "argv": sys.argv, "modules": modules,
            "pythons": pythons, "platform": platform.platform(), "nproc": os.cpu_count(),
            "repeat": a.repeat, "heavy_repeat": a.heavy_repeat, "scale": a.scale, "quick": a.quick,
            "sizes": a.size, "interrupted": interrupted,
            "logs": os.path.relpath(runner.logdir, ROOT),
        },
        "drivers": runner.meta,
        "results": runner.results,
        "table": rows,
    }
    text = json.dumps(out, indent=1, default=str)
    if a.json == "-":
        print(text)
    else:
        path = a.json or os.path.join(RESULTS, f"{stamp}.json")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")
        shown = os.path.relpath(path, ROOT) if os.path.abspath(path).startswith(ROOT + os.sep) else path
        log(f"# results: {shown}  (logs: {out['meta']['logs']}/)  "
            f"total {out['meta']['wall_s']:.0f}s")
    if lock is not None:
        lock.close()
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
