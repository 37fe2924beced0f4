"""What the benchmark suite runs: workloads, their groups, sizes and time limits.

Pure standard library, so both `run.py` (any interpreter) and `workloads.py`
(the interpreter of the module under test) import it.

A *workload* is what --only/--skip name and what one time limit guards; it may
print several figures (e.g. `memory_idle` prints memory_idle_rss and
memory_idle_pss).  A *group* is a set of workloads that share one driver
process (and, for most groups, one cluster started with init()); run.py starts
a fresh driver process per group and per module.
"""
from __future__ import annotations

# group -> (init() keyword arguments or None when the driver starts no cluster,
#           workloads in run order)
GROUPS: dict[str, tuple[dict | None, list[str]]] = {
    # fresh processes per round: import, init, first task, idle memory, shutdown
    "lifecycle": (None, ["init_time", "memory_idle", "shutdown_time"]),
    # the seed example as a whole `python svd_seed.py` process
    "seed": (None, ["seed_process"]),
    # the portable workloads of the team's bench_portable.py, one cluster
    "core": ({}, [
        "tasks_sync", "tasks_async",
        "actor_calls_sync", "actor_calls_async", "actor_calls_concurrent",
        "async_actor_calls_sync", "async_actor_calls_async", "async_actor_concurrency",
        "wait_one_by_one",
        "put_small", "get_small", "put_large", "get_large",
        "pass_large_arg", "pass_large_value",
        "seed_svd",
        "await_style", "await_gather",
        "memory_end",
    ]),
    "tasks_100k": ({}, ["tasks_100k"]),
    "actors": ({}, ["actor_create_first_call", "actor_idle", "actors_50"]),
    "actors_1000": ({}, ["actors_1000"]),
    "resources": ({"resources": {"foo": 1}}, ["pg_rate", "tasks_custom_resource"]),
}

ALL_WORKLOADS = [w for _init, ws in GROUPS.values() for w in ws]
GROUP_OF = {w: g for g, (_init, ws) in GROUPS.items() for w in ws}

# figure names accepted by --only/--skip as the workload that prints them
ALIASES = {
    "import_time": "init_time",
    "memory_idle_rss": "memory_idle", "memory_idle_pss": "memory_idle",
    "leftover_processes": "shutdown_time",
    "memory_end_rss": "memory_end", "memory_end_pss": "memory_end",
    "seed_svd_sequential": "seed_svd",
    "tasks_100k_peak_rss": "tasks_100k",
    "actor_idle_rss": "actor_idle", "actor_idle_pss": "actor_idle",
    "actors_50_pss_per_actor": "actors_50",
    "actors_1000_pss_growth": "actors_1000", "actors_1000_per_actor": "actors_1000",
    "actors_1000_pss_per_actor": "actors_1000",
}

# N per round (the count of calls, tasks, actors, ...); scaled by --scale unless UNSCALED
SIZES = {
    "tasks_sync": 500,          # sequential get(f.remote()) calls per round
    "tasks_async": 2000,        # tasks submitted then fetched per round
    "actor_calls_sync": 1000,
    "actor_calls_async": 2000,
    "actor_calls_concurrent": 2000,
    "async_actor_calls_sync": 1000,
    "async_actor_calls_async": 2000,
    "async_actor_concurrency": 1000,  # concurrent 10 ms sleeps
    "wait_one_by_one": 1000,
    "put_small": 2000,
    "get_small": 2000,
    "put_large": 5,             # puts of the large array per round
    "get_large": 50,            # gets of a stored large array per round
    "pass_large_arg": 10,       # tasks taking a ref to the large array
    "pass_large_value": 5,      # tasks taking the large array by value
    "seed_svd": 8,              # SVD tasks
    "await_style": 500,         # sequential `await f.remote()`
    "await_gather": 2000,       # asyncio.gather over f.remote() awaitables
    "seed_process": 8,          # SVD tasks in the seed script
    "tasks_100k": 100_000,      # tiny tasks submitted at once
    "actor_create_first_call": 20,  # sequential create + first call samples
    "actor_idle": 4,            # idle actors whose processes are measured
    "actors_50": 50,            # actors created at once
    "actors_1000": 1000,        # actors alive at once
    "pg_rate": 50,              # placement groups per round (Ray: ~2/s, a freed bundle is retried after 1 s)
    "tasks_custom_resource": 2000,
}
UNSCALED = {"async_actor_concurrency", "seed_svd", "seed_process", "actor_create_first_call",
            "actor_idle", "actors_50", "actors_1000"}

# --quick: sizes for a smoke run (every workload still runs, just small)
QUICK_SIZES = {
    "tasks_sync": 100, "tasks_async": 400,
    "actor_calls_sync": 200, "actor_calls_async": 400, "actor_calls_concurrent": 400,
    "async_actor_calls_sync": 200, "async_actor_calls_async": 400,
    "async_actor_concurrency": 200, "wait_one_by_one": 200,
    "put_small": 400, "get_small": 400, "put_large": 2, "get_large": 10,
    "pass_large_arg": 3, "pass_large_value": 2, "seed_svd": 8,
    "await_style": 100, "await_gather": 400,
    "seed_process": 8, "tasks_100k": 2000,
    "actor_create_first_call": 5, "actor_idle": 2, "actors_50": 10, "actors_1000": 20,
    "pg_rate": 10, "tasks_custom_resource": 200,
}
QUICK_LARGE_MB = 20
QUICK_IDLE_S = 1.0

# Ray needs ~50-100 MiB per actor process: 1,000 of them would not fit this machine.
RAY_ACTORS_1000_CAP = 100

# Workloads run only --heavy-repeat rounds (default 1) instead of --repeat.
HEAVY = {"tasks_100k", "actors_1000"}

# Per-workload time limit in seconds (--timeout overrides all).  Lifecycle and
# seed workloads get theirs per round (a round is a fresh process).
DEFAULT_TIMEOUT = 180.0
TIMEOUTS = {
    "tasks_100k": 900.0,
    "actors_50": 600.0,
    "actors_1000": 900.0,
    "pg_rate": 300.0,
}
ROUND_TIMEOUTS = {"lifecycle": 120.0, "seed_process": 120.0}
INIT_TIMEOUT = 120.0      # import + init() + first task of a group's driver
SHUTDOWN_TIMEOUT = 60.0


def round_limit(kind: str, override: float = 0.0) -> float:
    """Time limit of one fresh-process round of `lifecycle` or `seed_process`."""
    return override or ROUND_TIMEOUTS[kind]


def time_limit(workload: str, repeat: int, override: float = 0.0) -> float:
    """Time limit (s) of a workload as the watchdog applies it.

    --timeout (override) replaces the default per workload; for the workloads
    made of fresh-process rounds it is the limit of one round."""
    kind = "lifecycle" if GROUP_OF.get(workload) == "lifecycle" else workload
    if kind in ROUND_TIMEOUTS:
        return round_limit(kind, override) * (repeat + 1) + 60
    return override or TIMEOUTS.get(workload, DEFAULT_TIMEOUT)


def resolve(names: str) -> tuple[list[str], list[str]]:
    """Comma-separated workload, figure or group names -> (workloads, unknown names)."""
    out: list[str] = []
    unknown: list[str] = []
    for raw in names.split(","):
        x = raw.strip()
        if not x:
            continue
        if x in GROUPS:
            out.extend(GROUPS[x][1])
        elif x in GROUP_OF:
            out.append(x)
        elif x in ALIASES:
            out.append(ALIASES[x])
        else:
            unknown.append(x)
    return out, unknown


def select(only: str, skip: str) -> tuple[list[str], list[str]]:
    """Workloads to run, in catalog order, and the unknown names given."""
    inc, bad1 = resolve(only)
    exc, bad2 = resolve(skip)
    chosen = [w for w in ALL_WORKLOADS if (not inc or w in inc) and w not in exc]
    return chosen, bad1 + bad2
