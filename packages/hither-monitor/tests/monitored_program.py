"""A real hither program for the page tests: jobs that finish, one that fails, one that waits.

    python monitored_program.py FLAG_PATH

Runs monitored_add jobs and a failing monitored_fail job on a ParallelJobHandler, prints
READY, then runs monitored_wait, which finishes once FLAG_PATH exists.
"""
import os
import sys
import time

import hither as hi


@hi.function("monitored_add", "0.1.0")
def monitored_add(a, b):
    print(f"adding {a} and {b}")
    return a + b


@hi.function("monitored_fail", "0.1.0")
def monitored_fail(x):
    raise ValueError(f"monitored_fail cannot take {x}")


@hi.function("monitored_wait", "0.1.0")
def monitored_wait(flag):
    while not os.path.exists(flag):
        time.sleep(0.05)
    return "done"


def main():
    flag = sys.argv[1]
    with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=2)):
        adds = [monitored_add.run(a=i, b=1) for i in range(5)]
        failing = monitored_fail.run(x=42)
        waiting = monitored_wait.run(flag=flag)
        for j in adds:
            j.wait(60)
        try:
            failing.wait(60)
        except Exception:  # noqa: BLE001 - it fails on purpose
            pass
        print("READY", flush=True)
        waiting.wait(120)
    hi.wait()


if __name__ == "__main__":
    main()
