"""The long-lived loop of a warm hither container (stdlib only, Python >= 3.8; run from the
container's read-only control folder as ``python3 warm_loop.py CTL_DIR IDLE_SECONDS``).

The control channel is two FIFOs the host made in CTL_DIR (``cmd`` and ``ans``): the loop
opens both at its start, says ``ready``, and the host then unlinks them, so from the first
job on no process of a job can reach them (by path they are gone; through /proc the loop,
made non-dumpable, is closed to its children; forked children close their copies first).
Each command is one JSON line: a job directory (in the exchange folder), the sha1 of its
runtime (a zip the host put into CTL_DIR, ``runtime-<sha1>.zip``) and the file for the job's
own stdout and stderr. The loop runs it in a forked child (numpy, hither and the runtime
already loaded), then kills every process the job left, wipes /tmp, /var/tmp and /dev/shm,
and answers with one JSON line (exit code, signal, whether the memory cgroup killed
something). It exits after IDLE_SECONDS without a job; with ``lifeline`` as a third
argument also at once when its launcher dies (EOF on stdin, see ``lifeline.py``).
"""
import json
import os
import select
import signal
import stat
import sys
import time

_held = [-1]  # the loop's lifeline descriptor (lifeline.py), -1 without one
_private = []  # type: list  # descriptors a job must not keep: the lifeline, cmd, ans
_runners = {}  # type: dict  # sha1 of a runtime zip -> the namespace of its __main__, loaded once
_loaded = []  # type: list  # the modules the runtime loaded last put into sys.modules
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")  # wiped after every job


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


def _set_dumpable(on):
    """prctl(PR_SET_DUMPABLE): a non-dumpable process's /proc entries (fd, mem, environ) are
    closed to other processes of the same uid without CAP_SYS_PTRACE."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 1 if on else 0, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


def _runner_namespace(path):
    """The namespace of the runtime zip at ``path`` (``CTL_DIR/runtime-<sha1>.zip``, written
    by the host, read-only here: a job cannot replace it), loaded once per content in the
    loop, so its modules are not compiled and imported per job (forked children share them)."""
    import runpy

    ns = _runners.get(path)
    if ns is None:
        for name in _loaded:  # another runtime's modules (its functions keep them)
            sys.modules.pop(name, None)
        before = set(sys.modules)
        ns = runpy.run_path(path, run_name="__hither_runner__")
        _loaded[:] = [n for n in sys.modules if n not in before
                      and (getattr(sys.modules[n], "__file__", None) or "").startswith(path + os.sep)]
        _runners[path] = ns
    return ns


def _run_child(job_dir, log, ns):
    """In the forked child: run the job directory with the runner; never returns."""
    code = 1
    try:
        for fd in _private:  # the job keeps no copy of the control channel or the lifeline
            os.close(fd)
        _set_dumpable(True)
        os.setpgid(0, 0)  # a group of its own
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)  # the job's own output, not the container log other jobs share
        os.dup2(out, 2)
        os.close(out)
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
    """Collect children that ended (orphans come to the loop when it is process 1)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _owns_namespace():
    """Whether the loop is the container's process 1, or the only child of docker's init:
    then ``kill(-1)`` reaches exactly the job's processes (never with ``pid=host``)."""
    if os.getpid() == 1:
        return True
    if os.getppid() != 1:
        return False
    try:
        with open("/proc/1/comm") as f:
            return f.read().strip() in ("docker-init", "tini", "tini-static")
    except OSError:
        return False


def _kill_everything_else(child):
    """End every process but the loop (and docker's init): whatever session or group the
    job's processes moved to, none outlives it to watch the next job."""
    if _owns_namespace():
        for _ in range(100):
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
            except OSError:
                break
            _reap()
            time.sleep(0.001)
    else:
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
    _reap()


def _mount_points():
    """The container's mount points (from /proc/self/mountinfo): never wiped into."""
    points = set()
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    points.add(fields[4].replace("\\040", " "))
    except OSError:
        pass
    return points


def _wipe(folder, keep):
    """Remove what jobs left in ``folder`` (a scratch folder), sparing mount points (the
    exchange folder's, a user's binds) and the folders above them: those are descended."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if path in keep:
            continue
        if stat.S_ISDIR(st.st_mode) and any(k.startswith(path + os.sep) for k in keep):
            _wipe(path, keep)
            continue
        _remove(path, st)


def _remove(path, st):
    try:
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, 0o700)  # a job may have locked it
            for name in os.listdir(path):
                sub = os.path.join(path, name)
                _remove(sub, os.lstat(sub))
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def _lines(fd, idle):
    """The commands read from ``fd``; ends after ``idle`` seconds without one."""
    buf = b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line.decode("utf-8"))
        ready, _, _ = select.select([fd], [], [], idle)
        if not ready:
            return
        data = os.read(fd, 65536)
        if not data:
            return
        buf += data


def _run(cmd, ctl_dir, keep):
    """One job: run it in a child, clean up after it, return the answer."""
    try:
        ns = _runner_namespace(os.path.join(ctl_dir, "runtime-%s.zip" % cmd["runtime"]))
    except Exception as exc:  # noqa: BLE001 - no usable runtime
        sys.stderr.write("hither warm loop: no runtime %s: %r\n" % (cmd.get("runtime"), exc))
        ns = {"main": lambda argv: 3}
    before = _oom_kills()
    pid = os.fork()
    if pid == 0:
        _run_child(cmd["job"], cmd["log"], ns)
    try:
        os.setpgid(pid, pid)  # also here: no race with the child's own call
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    _kill_everything_else(pid)
    for folder in SCRATCH:
        _wipe(folder, keep)
    after = _oom_kills()
    return {"id": cmd["id"],
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "oom_killed": before >= 0 and after > before}


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
    _set_dumpable(False)
    if lifeline:  # stdin is the launcher's attach connection: at its EOF the loop ends
        _held[0] = _load_lifeline(ctl_dir).hold()
        if _held[0] >= 0:
            _private.append(_held[0])
    cmd_fd = os.open(os.path.join(ctl_dir, "cmd"), os.O_RDWR)  # no wait for the writer
    ans_fd = os.open(os.path.join(ctl_dir, "ans"), os.O_WRONLY)  # the host reads already
    _private.extend([cmd_fd, ans_fd])
    for name in ("numpy", "hither"):  # paid once here, not per job
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - the job will say what is missing
            pass
    os.write(ans_fd, b'{"ready": true}\n')
    keep = _mount_points()
    for cmd in _lines(cmd_fd, idle):
        out = _run(cmd, ctl_dir, keep)
        os.write(ans_fd, (json.dumps(out) + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:4] == ["lifeline"]))
