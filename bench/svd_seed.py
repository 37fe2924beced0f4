#!/usr/bin/env python3
"""The seed example as a whole program: what `python examples/svd_seed.py` does.

    init(num_cpus=2); 8 tasks of (800x800 random matrix, np.linalg.svd, sleep 0.25 s); shutdown()

The Ray program is written as a user writes it (`@ray.remote`, `ray.get`, ...);
only the module is picked by the environment, so the benchmark runs the same
file under `ray` and `asyncray`:

    BENCH_MODULE=asyncray python bench/svd_seed.py     # default BENCH_MODULE=ray

The `seed_process` workload times the whole process from the outside.  The
script prints one line `SEED {json}` with its own inner timings and results.
"""
import importlib
import json
import os
import sys
import time

T_START = time.perf_counter()
ray = importlib.import_module(os.environ.get("BENCH_MODULE", "ray"))
import numpy as np  # noqa: E402

T_IMPORTED = time.perf_counter()


@ray.remote
def svd_task(seed, n=800, sleep_s=0.25):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    _u, s, _vh = np.linalg.svd(m)
    time.sleep(sleep_s)  # stands in for I/O
    return float(s[0])


def main():
    k = int(os.environ.get("BENCH_SEED_TASKS", "8"))
    ray.init(num_cpus=int(os.environ.get("BENCH_NUM_CPUS", "2")))
    t_init = time.perf_counter()
    largest = ray.get([svd_task.remote(i) for i in range(k)])
    t_tasks = time.perf_counter()
    ray.shutdown()
    t_end = time.perf_counter()
    print("SEED " + json.dumps({
        "import_s": T_IMPORTED - T_START,
        "init_s": t_init - T_IMPORTED,
        "tasks_s": t_tasks - t_init,
        "shutdown_s": t_end - t_tasks,
        "largest": largest,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
