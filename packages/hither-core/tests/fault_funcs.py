"""hither functions of the fault tests (test_core_faults), at module level so that
ParallelJobHandler workers import them by module name ``fault_funcs``."""
import argparse
import os
import subprocess
import sys
import time

import hither as hi


@hi.function('fault_exit', '0.1.0')
def fault_exit(how):
    """Ends itself the way ``how`` says; a job must not end the calling program."""
    if how == "sys.exit":
        raise SystemExit(3)
    if how == "argparse":
        p = argparse.ArgumentParser(prog="fault_exit")
        p.add_argument("--n", type=int, required=True)
        p.parse_args(["--n", "not-a-number"])
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt("raised by the job")
    return "not reached"


@hi.function('fault_pid', '0.1.0')
def fault_pid():
    return os.getpid()


@hi.function('fault_fork_then_die', '0.1.0')
def fault_fork_then_die():
    """The worker forks a child that keeps the worker's socket open, then dies."""
    if os.fork() == 0:
        time.sleep(1000)
        os._exit(0)
    time.sleep(0.2)
    os._exit(7)


@hi.function('fault_sleep_with_child', '0.1.0')
def fault_sleep_with_child(pid_file, seconds=1000):
    """Starts ``sleep 1000``, records (worker pid, child pid), then sleeps."""
    child = subprocess.Popen(["sleep", "1000"])
    tmp = pid_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.replace(tmp, pid_file)
    time.sleep(seconds)
    return "slept"


@hi.function('fault_sleep', '0.1.0')
def fault_sleep(seconds, value=None):
    time.sleep(seconds)
    return value


@hi.function('fault_cyclic_result', '0.1.0')
def fault_cyclic_result(kind):
    if kind == "cycle":
        a = []
        a.append(a)
        return {"data": a}
    deep = []
    for _ in range(10_000):
        deep = [deep]
    return deep


class _WeirdClass:
    """An object whose ``__class__`` lookup raises: checking it fails with RuntimeError."""

    @property
    def __class__(self):
        raise RuntimeError("this object's __class__ cannot be read")


@hi.function('fault_weird_result', '0.1.0')
def fault_weird_result():
    return [1, _WeirdClass()]


@hi.function('fault_fail', '0.1.0')
def fault_fail(delay=0.0):
    time.sleep(delay)
    raise ValueError("boom at the head of the chain")


@hi.function('fault_inc', '0.1.0')
def fault_inc(x):
    return x + 1


@hi.function('fault_double_fork', '0.1.0')
def fault_double_fork(pid_file, how):
    """Leaves an orphan ``sleep 300`` in a session of its own (its parent has already
    exited when the job returns): through a Python child ("python") or a shell ("shell")."""
    if how == "python":
        cmd = [sys.executable, "-c", "import subprocess as s; print(s.Popen(['sleep', '300'], "
               "start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"]
    else:
        cmd = ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!"]
    orphan = int(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout)
    deadline = time.monotonic() + 10
    while True:  # the shell's background child calls setsid (then execs sleep) on its own time
        with open(f"/proc/{orphan}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if int(fields[3]) == orphan or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    with open(pid_file, "w") as f:
        f.write(f"{orphan} {fields[1]} {fields[3]}")  # its pid, parent and session now
    return os.getpid()


@hi.function('fault_leave_child', '0.1.0')
def fault_leave_child(pid_file):
    """Starts ``sleep 1000`` three ways (a child, a grandchild through a shell, a child in a
    session of its own) and returns at once."""
    child = subprocess.Popen(["sleep", "1000"])
    own_session = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    shell = subprocess.Popen(["sh", "-c", "sleep 1000 & echo $!"], stdout=subprocess.PIPE, text=True)
    grandchild = int(shell.stdout.readline())
    shell.wait()
    with open(pid_file, "w") as f:
        f.write(f"{child.pid} {grandchild} {own_session.pid}")
    return os.getpid()


@hi.function('fault_die_once', '0.1.0')
def fault_die_once(marker, how="exit"):
    """Dies (os._exit, or SIGKILL of itself) the first time, when ``marker`` does not exist
    yet; later runs return their pid."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("died once\n")
        if how == "sigkill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(9)
    return os.getpid()


@hi.function('fault_raise_once', '0.1.0')
def fault_raise_once(marker):
    """Counts its runs in ``marker``; raises ValueError on the first."""
    n = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(n + 1))
    if n == 0:
        raise ValueError("first run fails")
    return n + 1
