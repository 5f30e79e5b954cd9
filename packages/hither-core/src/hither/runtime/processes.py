"""The processes around a job: this process as the subreaper of what the job starts,
``kill_leftovers`` after it, the ``Watchdog`` at its timeout, dying with the launcher, and
sending the console to a file. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time

from .jobdir import ERROR, RUNTIME, write_output

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, List, Optional, Tuple

# ------------------------------------------------------------------ processes a job leaves
def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie does; so does another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux >= 3.4): a process the job
    starts whose parent ends (a double fork, a daemon in a session of its own) becomes a
    child of this process instead of init's, so ``kill_leftovers`` finds it. True if set."""
    prctl = load_prctl()
    return prctl is not None and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


_PRCTL: List[Optional[Callable[..., int]]] = []
# [libc's prctl, or None]: loaded once (importing ctypes costs ~4 ms per job)


def load_prctl() -> Optional[Callable[..., int]]:
    """libc's ``prctl`` (None off Linux or without ctypes); the job server loads it before
    it forks, so its jobs find it loaded."""
    if not _PRCTL:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).prctl
            except (ImportError, OSError, AttributeError):  # a Python without ctypes: children only
                fn = None
        _PRCTL.append(fn)
    return _PRCTL[0]


def _leftover_pids(me: int, lead: bool) -> List[int]:
    """Children of ``me`` and, when ``me`` leads its process group, the group's other
    members (read from /proc; empty where there is none)."""
    found: List[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == me or (lead and int(fields[2]) == me):
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_leftovers(timeout: float = 5.0) -> bool:
    """After a job: SIGKILL every process it left running, and reap them. Those are the
    children of this process (with ``become_subreaper``, every descendant whose parent has
    ended is one, whatever its session) and, if this process leads its process group, the
    group's members. Killed processes' own children come to this process in turn, so it
    repeats until no child is left (at most ``timeout`` s). Costs one system call when the
    job left nothing. Returns False if children were still alive at the end."""
    me = os.getpid()
    lead = os.getpgrp() == me
    deadline = time.monotonic() + timeout
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass  # reaps children that ended
        except ChildProcessError:
            return True  # no child left
        if time.monotonic() > deadline:
            return False
        pids = _leftover_pids(me, lead)
        if not pids:  # no /proc: the process group goes when the runner's launcher kills it
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)


def end_runner(code: int) -> None:
    """End this runner now with ``code``, with its process group where it leads one. Never
    raises: as a container's process 1 (``docker run`` without an init) its "group" is the
    whole pid namespace, which ``kill_leftovers`` has emptied (``killpg`` would raise and
    skip the exit); the namespace ends with process 1 anyway."""
    try:
        if os.getpid() != 1 and os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    except OSError:
        pass
    os._exit(code)


class Watchdog(object):
    """The runner's own stop at the job's timeout (``spec["timeout"]``): it writes a
    JobTimeoutError as the job's outcome and ends the runner (and, where the runner leads
    its process group, every process the job started), so a job stops on time even with
    no supervisor around it (a Slurm pilot, a remote worker). Launchers stop the runner
    too; whichever comes first, the outcome is the same error."""

    def __init__(self, job_dir: str, timeout: float, ri: Dict[str, Any]) -> None:
        self.job_dir, self.timeout, self.ri = job_dir, timeout, ri
        self.lock = threading.Lock()
        self.finished = False
        self.timer = threading.Timer(timeout, self.fire)
        self.timer.daemon = True

    def start(self) -> None:
        self.timer.start()

    def done(self) -> bool:
        """The job's outcome is being written: the watchdog must not write another."""
        with self.lock:
            fired = self.finished
            self.finished = True
        self.timer.cancel()
        return not fired

    def fire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.finished = True
        msg = ("job %s was stopped by its runner after running longer than job_timeout=%s s; "
               "raise hi.Config(job_timeout=...) if it needs longer"
               % (self.ri.get("function_name", "?"), self.timeout))
        try:
            write_output(os.path.join(self.job_dir, ERROR), {
                "type_module": "hither.errors", "type_name": "JobTimeoutError", "message": msg,
                "args_json": [msg], "traceback": ""})
            ri = dict(self.ri, status="error", end_time=time.time(), timed_out=True)
            write_output(os.path.join(self.job_dir, RUNTIME), ri)
        finally:
            try:
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            kill_leftovers(1.0)  # the job's processes, orphans in sessions of their own too
            end_runner(124)


def finite_timeout(value: Any) -> Optional[float]:
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return t if t > 0 and math.isfinite(t) else None


_PARENT_WATCHED: List[Optional[Tuple[int, str]]] = [None]
# (pid, parent) whose watch thread runs


def _die_with_parent(parent_pid: int) -> None:
    """End this runner, with every process of its group, when the process that launched it
    (``$HITHER_RUNNER_PARENT``) is gone: a launcher killed with SIGKILL leaves no job behind.
    A thread polls ``getppid`` (portable; a reparented runner sees another parent)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                end_runner(125)
            time.sleep(0.5)

    t = threading.Thread(target=watch, name="hither-runner-parent", daemon=True)
    t.start()


def die_with_launcher() -> None:
    """With ``$HITHER_RUNNER_PARENT`` set (by the launcher, to its pid): end this runner when
    that process is gone. Once per process: a reused one runs many jobs."""
    parent = os.environ.get("HITHER_RUNNER_PARENT")
    if parent and parent.isdigit() and _PARENT_WATCHED[0] != (os.getpid(), parent):
        _PARENT_WATCHED[0] = (os.getpid(), parent)
        _die_with_parent(int(parent))


def console_to(path: str) -> None:
    """Send this process's stdout and stderr (and its children's) to ``path``, line by line,
    so a watcher (a compute resource shipping live logs) sees output while the job runs.
    Asked for by the launching side with ``spec["extra"]["console_file"]``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream, target in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.dup2(fd, target)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):  # not a TextIOWrapper
            pass
