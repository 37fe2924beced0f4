"""The seed example: 8 SVDs of 800x800 matrices (each followed by 0.25 s of "I/O"),
first one after another in this process, then as asyncray tasks on a local cluster.

    python examples/svd_seed.py
"""
import time

import numpy as np

import asyncray as ray


def svd_task(seed: int, n: int = 800, sleep_s: float = 0.25) -> float:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    _u, s, _vh = np.linalg.svd(m)
    time.sleep(sleep_s)
    return float(s[0])


def main() -> None:
    t0 = time.perf_counter()
    sequential = [svd_task(i) for i in range(8)]
    t_seq = time.perf_counter() - t0

    t0 = time.perf_counter()
    ray.init()
    remote_svd = ray.remote(svd_task)
    parallel = ray.get([remote_svd.remote(i) for i in range(8)])
    ray.shutdown()
    t_par = time.perf_counter() - t0

    assert np.allclose(sequential, parallel)
    print(f"largest singular values: {[round(v, 2) for v in parallel]}")
    print(f"sequential: {t_seq:.2f} s")
    print(f"asyncray (init + 8 tasks + shutdown): {t_par:.2f} s  ({t_seq / t_par:.2f}x)")


if __name__ == "__main__":
    main()
