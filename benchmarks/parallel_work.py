"""ParallelJobHandler work per job (issue 19): a program to count instructions with
callgrind, since wall time on a shared machine is too noisy for a 5% question (not a
``bench_*`` file: ``run.py`` does not run it, it is run under valgrind).

    # whole jobs: the calling process and (with children traced) each worker
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null \\
        python benchmarks/parallel_work.py jobs main 1200
    # the per-job steps code identity touches, in one process
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/parallel_work.py steps main 6000

Run each at two job counts (200 and 1200; 1000 and 6000) and divide the difference of the
"Collected" counts by the difference of the counts: start-up cancels out. ``module`` runs
``bench_funcs.noop``, ``main`` a no-op defined in this ``__main__``, ``helper`` one of
this ``__main__`` that calls a helper and reads an int global. Runs against older
hither too (``PYTHONPATH=<other tree>/packages/hither-core/src``), as the comparison needs.
"""
from __future__ import annotations

import inspect
import os
import sys
import types
from typing import Any

import hither as hi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_funcs import noop  # noqa: E402


@hi.function('mainnoop', '0.1.0')
def mainnoop(x: Any) -> Any:
    return x


OFFSET = 1


def plus_offset(x: Any) -> Any:
    return x + OFFSET


@hi.function('mainhelper', '0.1.0')
def mainhelper(x: Any) -> Any:
    return plus_offset(x) - OFFSET


def jobs(f: Any, n: int) -> None:
    """``n`` no-op jobs on two workers; the workers are stopped, not killed, so that
    valgrind prints their counts."""
    from hither.local import messages as P

    ph = hi.ParallelJobHandler(num_workers=2)
    with hi.Config(job_handler=ph):
        f.run(x=-1).wait()
        started = [f.run(x=i) for i in range(n)]
    for j in started:
        j.wait()
    workers = [w for w in ph._workers if w is not None]
    for w in workers:
        ph._send(w, P.Stop())
    for w in workers:
        w.proc.wait()
    ph.shutdown()


def steps(f: Any, n: int) -> None:
    """What a job's reference costs on both sides, without the rest of a job: its code
    identity, its reference, the message there and back, the worker's function lookup."""
    from hither.local import messages as P, parallel, worker

    new = "identity" in inspect.signature(parallel.function_ref).parameters
    identity: Any = None
    if new:
        from hither.code_identity import function_identity as identity
    ship = getattr(parallel, "shipped_ref", None)
    shipped = getattr(worker, "_shipped", None)
    w = types.SimpleNamespace(shipped=set())
    for i in range(n):
        ref = parallel.function_ref(f, identity(f)) if new else parallel.function_ref(f)
        if ship is not None:
            ref = ship(ref, w)
        msg = P._decode(P._encode(P.RunJob(f"j{i}", ref, b"\x80\x05N.", [], False, "/tmp")))
        r = msg.function_ref
        if shipped is not None and r[0] != "id":  # as worker.main does
            shipped.setdefault(r[-1], r)
        worker.load_function(r)


if __name__ == "__main__":
    what, which, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn = {"module": noop, "main": mainnoop, "helper": mainhelper}[which]
    {"jobs": jobs, "steps": steps}[what](fn, count)
