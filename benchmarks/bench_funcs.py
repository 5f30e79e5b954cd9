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
