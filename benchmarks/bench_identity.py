"""Code identity (issue 19): what ``job.code_identity`` costs per ``.run()``, beside an empty
Python call measured in the same run (the machine is shared: compare ratios).

    python benchmarks/bench_identity.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit

import numpy as np

import hither as hi
from hither.code_identity import function_identity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import noop  # noqa: E402

_SCRIPT = """
SCALE = 1
TABLE = {"a": [1, 2, 3], "b": (4.0, "x")}
ARR = np.arange(1000.0)
def helper(x):
    return x + SCALE
@hi.function('bi_noop', '0.1.0')
def bi_noop(x):
    return x
@hi.function('bi_helper', '0.1.0')
def bi_helper(x):
    return helper(x) * SCALE
@hi.function('bi_mutable', '0.1.0')
def bi_mutable(x):
    return helper(x) + len(TABLE) + ARR[0]
"""


def _empty(x):
    return x


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    n = 2000 if args.quick else 20000
    ns: dict = {"hi": hi, "np": np, "__name__": "__main__"}  # functions of a script
    exec(compile(_SCRIPT, "<bench script>", "exec"), ns)
    base = min(timeit.repeat(lambda: _empty(1), number=n, repeat=7)) / n * 1e6
    cases = [("module function", noop), ("script function, no globals", ns["bi_noop"]),
             ("script function, a helper and an int global", ns["bi_helper"]),
             ("script function reading a dict and a 1000-float array", ns["bi_mutable"])]
    for name, fn in cases:
        function_identity(fn)
        t = min(timeit.repeat(lambda fn=fn: function_identity(fn), number=n, repeat=7)) / n * 1e6
        print(f"code identity per .run(), {name}: {t:.3g} us | empty Python call: {base:.3g} us | "
              f"ratio {t / base:.1f}", flush=True)


if __name__ == "__main__":
    main()
