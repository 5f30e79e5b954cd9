"""A small hither program for the job event log tests: runs jobs, prints what it saw as JSON.

    python events_prog.py N [exit]

``exit``: leave at once after the jobs (the recorder's exit flush must write them);
otherwise stop the recorder first and report its warnings.
"""
import json
import logging
import sys
import time

import hither as hi
from hither.events import recorder


@hi.function("double", "1")
def double(x):
    return 2 * x


@hi.function("fail", "1")
def fail(x):
    raise ValueError(f"no {x}")


@hi.function("boom", "1")
def boom(x):
    print("about to fail")
    raise KeyError(f"missing {x}")


@hi.function("sleepy", "1")
def sleepy(s):
    time.sleep(s)
    return s


class _Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main():
    n = int(sys.argv[1])
    keep = _Keep()
    logging.getLogger("hither.events").addHandler(keep)
    double.run(x=-1).wait()  # imports, and the recorder's start, before the clock
    fail.run(x=0).wait_done()
    t0 = time.perf_counter()
    jobs = [double.run(x=i) for i in range(n)]
    results = [j.wait() for j in jobs]
    bad = fail.run(x=1)
    bad.wait_done()
    pipe = double.run(x=jobs[0]) if jobs else None
    if pipe is not None:
        results.append(pipe.wait())
    elapsed = time.perf_counter() - t0
    alljobs = jobs + [bad] + ([pipe] if pipe is not None else [])
    out = {"results": results, "statuses": [j.get_status().value for j in alljobs],
           "error": repr(bad.get_error()), "elapsed": elapsed, "ids": [j.id for j in alljobs],
           "info_keys": sorted(jobs[0].get_runtime_info().model_dump()) if jobs else [],
           "run_id": recorder.RUN_ID}
    if sys.argv[2:] != ["exit"]:
        recorder.reset()
        out["warnings"] = keep.messages
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
