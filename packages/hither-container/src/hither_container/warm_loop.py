"""The long-lived loop of a warm hither container (stdlib only, Python >= 3.8; copied into
the container's control folder and run as ``python3 warm_loop.py CTL_DIR IDLE_SECONDS``).

The host drops ``<id>.job`` files (a job directory's path) into CTL_DIR; the loop runs each
in a forked child (a clean process started from the loop's state, with numpy, hither and
the job directory's runtime (runner.py, a zip) already loaded, in the job's own folder) and answers with ``<id>.done`` (JSON: exit code,
signal, whether the memory cgroup killed something). It exits after IDLE_SECONDS without a
job, so a container whose owner vanished stops by itself; with ``lifeline`` as a third
argument it also ends at once when its launcher dies (EOF on stdin, see ``lifeline.py``).
"""
import json
import os
import signal
import sys
import time


def _oom_kills():
    """The container's out-of-memory kill count (cgroup v2, else v1), or -1 if unknown."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return -1


_held = [-1]  # the loop's lifeline descriptor (lifeline.py), -1 without one
_runners = {}  # type: dict  # sha1 of a runner.py -> the namespace of its __main__, loaded once
_loaded = []  # type: list  # the modules the runtime loaded last put into sys.modules


def _runner_namespace(job_dir, ctl_dir):
    """The namespace of the job directory's runner.py (the runtime: a zip with a
    ``__main__.py``, whose ``main(argv)`` runs a job directory), loaded once per content in
    the loop, so its modules are not compiled and imported per job (forked children share
    them). It is loaded from a copy in the control folder named by its sha1: a path that
    stays, whatever happens to the job directory, and never holds another content."""
    import hashlib
    import runpy

    with open(os.path.join(job_dir, "runner.py"), "rb") as f:
        data = f.read()
    key = hashlib.sha1(data).hexdigest()
    ns = _runners.get(key)
    if ns is None:
        path = os.path.join(ctl_dir, "runtime-%s.zip" % key)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
        for name in _loaded:  # another runtime's modules (its functions keep them)
            sys.modules.pop(name, None)
        before = set(sys.modules)
        ns = runpy.run_path(path, run_name="__hither_runner__")
        _loaded[:] = [n for n in sys.modules if n not in before
                      and (getattr(sys.modules[n], "__file__", None) or "").startswith(path + os.sep)]
        _runners[key] = ns
    return ns


def _run_child(job_dir, ns):
    """In the forked child: run the job directory with the runner; never returns."""
    code = 1
    try:
        if _held[0] >= 0:  # the lifeline is the loop's: the job keeps no copy of it
            os.close(_held[0])
        os.setpgid(0, 0)  # a group of its own: whatever the job starts dies with it
        os.chdir(job_dir)
        sys.argv = [os.path.join(job_dir, "runner.py"), job_dir]
        code = ns["main"]([job_dir])
    except BaseException as exc:  # noqa: BLE001 - reported as the child's exit code
        sys.stderr.write("hither warm loop: %r\n" % (exc,))
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _reap():
    """Collect orphans that ended: the loop is the container's process 1, they are its."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _load_lifeline(ctl_dir):
    """lifeline.py from the control folder, under a private name: a job's own module named
    ``lifeline`` must not find it in ``sys.modules``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_hither_lifeline",
                                                  os.path.join(ctl_dir, "lifeline.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(ctl_dir, idle, lifeline=False):
    if lifeline:  # stdin is the launcher's attach connection: at its EOF the loop ends
        _held[0] = _load_lifeline(ctl_dir).hold()
    for name in ("numpy", "hither"):  # paid once here, not per job
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - the job will say what is missing
            pass
    last = time.monotonic()
    pause = 0.0005
    while True:
        jobs = sorted(n for n in os.listdir(ctl_dir) if n.endswith(".job"))
        if not jobs:
            _reap()
            if time.monotonic() - last > idle:
                return 0
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
            continue
        pause = 0.0005
        for name in jobs:
            path = os.path.join(ctl_dir, name)
            with open(path) as f:
                job_dir = f.read().strip()
            os.remove(path)
            try:
                ns = _runner_namespace(job_dir, ctl_dir)
            except Exception as exc:  # noqa: BLE001 - the job directory is unusable
                sys.stderr.write("hither warm loop: no runner in %s: %r\n" % (job_dir, exc))
                ns = {"main": lambda argv: 3}
            _reap()
            before = _oom_kills()
            pid = os.fork()
            if pid == 0:
                _run_child(job_dir, ns)
            try:
                os.setpgid(pid, pid)  # also here: no race with the child's own call
            except OSError:
                pass
            _, status = os.waitpid(pid, 0)
            try:  # processes the job left behind do not outlive it
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            _reap()
            after = _oom_kills()
            out = {"exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                   "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                   "oom_killed": before >= 0 and after > before}
            done = os.path.join(ctl_dir, name[:-4] + ".done")
            with open(done + ".tmp", "w") as f:
                json.dump(out, f)
            os.rename(done + ".tmp", done)
            last = time.monotonic()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:4] == ["lifeline"]))
