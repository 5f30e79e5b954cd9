"""hither functions the hither-slurm tests run (module level: a pilot loads them by name)."""
import os
import subprocess
import sys
import time

import numpy as np

import hither as hi


@hi.function("slurm_add", "0.1.0")
def slurm_add(x, y):
    return x + y


@hi.function("slurm_where", "0.1.0")
def slurm_where():
    print("hello from the pilot")
    print("on stderr", file=sys.stderr)
    return {"pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "batch": os.environ.get("HITHER_SLURM_BATCH")}


@hi.function("slurm_fail", "0.1.0")
def slurm_fail(message):
    raise ValueError(message)


@hi.function("slurm_arr", "0.1.0")
def slurm_arr(n):
    return np.arange(n) * 2


@hi.function("slurm_sleep", "0.1.0")
def slurm_sleep(seconds, pidfile=None):
    """Sleep, with a grandchild process; record both pids in pidfile."""
    child = subprocess.Popen(["sleep", str(seconds + 60)])
    if pidfile:
        with open(pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.replace(pidfile + ".tmp", pidfile)
    time.sleep(seconds)
    child.kill()
    return seconds


@hi.function("slurm_crash", "0.1.0")
def slurm_crash():
    os._exit(9)


@hi.function("slurm_in_box", "0.1.0")
@hi.container("docker://hither-test/python-numpy:3.11")
def slurm_in_box(a, host_only):
    # ``host_only`` is a folder of the calling machine that no container mounts
    return {"in_container": not os.path.exists(host_only), "sum": float(np.sum(a))}


@hi.function("slurm_file_copy", "0.1.0")
def slurm_file_copy(f):
    with open(f) as fh:
        text = fh.read()
    with open("copied.txt", "w") as fh:
        fh.write(text + "!")
    return hi.File("copied.txt")


@hi.function("slurm_ramp", "0.1.0")
def slurm_ramp(n):
    """A large result: float64 0..n-1 (n=6_250_000 is 50 MB)."""
    return np.arange(n, dtype=np.float64)


@hi.function("slurm_total", "0.1.0")
def slurm_total(a, scale):
    """The sum of ``a`` times ``scale``, and how many bytes of arrays its job directory
    holds (the runner runs the job in it)."""
    here = sum(e.stat().st_size for e in os.scandir("arrays")) if os.path.isdir("arrays") else 0
    return {"total": float(np.sum(a)) * scale, "n": int(a.shape[0]), "arrays_here": here}


@hi.function("slurm_text", "0.1.0")
def slurm_text(text, big=0):
    """A File holding ``text`` (plus ``big`` bytes of padding)."""
    with open("made.txt", "w") as fh:
        fh.write(text + "x" * big)
    return hi.File("made.txt")


@hi.function("slurm_segv", "0.1.0")
def slurm_segv():
    """Crash the way a broken C extension does."""
    import signal

    print("about to crash")
    os.kill(os.getpid(), signal.SIGSEGV)
