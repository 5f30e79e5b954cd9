"""Hither functions the benchmarks run (a module, so worker processes can import them)."""
import time

import hither as hi


@hi.function('noop', '0.1.0')
def noop(x):
    return x


@hi.function('echo', '0.1.0')
def echo(x):
    return x


@hi.function('sqr_with_delay', '0.1.0')
def sqr_with_delay(x, delay=None):
    if delay is not None:
        time.sleep(delay)
    return x * x


@hi.function('bench_ramp', '0.1.0')
def bench_ramp(n, seed=0):
    """A large result: ``n`` float64 (6_250_000 is 50 MB); ``seed`` makes each run new."""
    import numpy as np

    return np.arange(n, dtype=np.float64) + seed


@hi.function('bench_sum', '0.1.0')
def bench_sum(a):
    import numpy as np

    return float(np.sum(a))
