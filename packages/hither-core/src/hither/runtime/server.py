"""The job server (``python -m hither.runtime --serve``): a long-lived process that runs many
job directories, each in a fork of this (clean) process, so jobs of two code bundles that
share a module name never see each other's modules; it never imports user code. Per job:

  server --fork--> job process (leader of its own process group G)

The job's processes are in G unless they leave it; the runner kills what the job left (G's
members and, as their subreaper, orphans in sessions of their own) before it writes the
outcome, and the server kills G again when it reaps the job process (a job that crashed).
Timeout and cancel kill G from the server. When the server dies, a thread of each job process
sees its death pipe reach EOF and kills G. Code bundles are unpacked once per server, in a
folder of its own (see ``jobdir.code_dir``), removed when it exits.

Input, one line each on stdin: a job directory path (run it), or JSON:
  {"op": "run", "job_dir": ..., "timeout": s, "log": path, "env": {...}}
  {"op": "cancel", "job_dir": ...}     {"op": "shutdown"}   (kills running jobs, exits)
Output, one JSON line each on stdout: {"event": "ready", "pid": ...}, then per job
  {"event": "started", "job_dir": ..., "pgid": ...} and
  {"event": "ended", "job_dir": ..., "exit_code": int, "reason": "exited" | "signal" |
   "timeout" | "cancelled" | "shutdown", "signal": int or null, "seconds": float}
and {"event": "error", "job_dir": ..., "message": ...} for a request it cannot take.
End of input: with --on-eof=drain (default) wait for running jobs, then exit; with
--on-eof=kill (what a client that owns the server uses) kill them and exit. With
--no-fsync, jobs write their outputs without fsync (see ``jobdir.FSYNC``).

With --reuse N, a job process that ended its job cleanly stays (at most N idle) and runs the
next job of the same code bundle (sha1 of code.zip), sent on a pipe of its own; it answers
"done CODE AGAIN" on another (see ``jobprocess.worker_process``). Its process group is still
its own, so timeout and cancel kill it as above (and the next job gets a fresh fork). Jobs of
one bundle then share a process one after another, as in a ParallelJobHandler's workers; a
fork per job saves nothing for them but costs ~5 ms. Stdlib-only, Python >= 3.8 (part of the
shipped runtime).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import tempfile
import time

from .calling import HOST
from .hashing import sha1_of_bytes
from .jobdir import FSYNC, read_bytes
from .jobprocess import job_process, reset_child_signals, watch_server, worker_process
from .processes import load_prctl
from .standin import install_stand_in

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Dict, List, Optional, Sequence, Tuple

CODE_CACHE_PREFIX = "hither-code-"


def _emit(obj: Dict[str, Any]) -> None:
    """One event line on stdout (the server's only use of it), flushed."""
    os.write(1, (json.dumps(obj) + "\n").encode("utf-8"))


class _Running(object):
    __slots__ = ("job_dir", "pid", "start", "deadline", "reason")

    def __init__(self, job_dir: str, pid: int, deadline: Optional[float]) -> None:
        self.job_dir, self.pid, self.deadline = job_dir, pid, deadline
        self.start = time.time()
        self.reason: Optional[str] = None  # set when the server kills it: timeout, cancelled, shutdown


class _Worker(object):
    """A reused job process (``--reuse``), as the server sees it."""
    __slots__ = ("pid", "key", "ctl_w", "ev_r", "buf")

    def __init__(self, pid: int, key: str, ctl_w: int, ev_r: int) -> None:
        self.pid, self.key, self.ctl_w, self.ev_r = pid, key, ctl_w, ev_r
        self.buf = b""


def _bundle_key(job_dir: str) -> Optional[str]:
    """The sha1 of a job directory's code bundle (None without one): jobs reuse only a
    process that ran the same bundle (which is then told it: see ``jobdir.code_dir``)."""
    try:
        return sha1_of_bytes(read_bytes(os.path.join(job_dir, "code.zip")))
    except OSError:
        return None


def _parse_request(line: str) -> Optional[Dict[str, Any]]:
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        req = json.loads(line)
        if not isinstance(req, dict) or req.get("op") not in ("run", "cancel", "shutdown"):
            raise ValueError("a request needs op: run, cancel or shutdown")
        return req
    return {"op": "run", "job_dir": line}


def _sweep_code_caches(parent: str) -> None:
    """Remove the code-bundle folders (``hither-code-<host>-<pid>-*``) of job servers of
    this host that are gone without removing theirs (killed with SIGKILL). A folder removed
    by mistake (another pid namespace sharing the folder) is only unpacked again by the
    next job that needs it (``jobdir.code_dir``)."""
    mark = "%s%s-" % (CODE_CACHE_PREFIX, HOST)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len(mark):].split("-", 1)[0]
        if not name.startswith(mark) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that server still runs (or its pid was reused: kept, to be safe)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:  # e.g. not ours to signal: alive
            continue


def _prepare(preload: Sequence[str]) -> None:
    """Load once in the server what every job needs, so its forks find it loaded."""
    install_stand_in()  # import hither once here, not in every job
    load_prctl()  # and ctypes
    try:  # the codec of zip member names (each job unpacks code.zip)
        import encodings.cp437  # noqa: F401
    except ImportError:
        pass
    for name in preload:
        __import__(name)


class _Server(object):
    """The server's state and its event loop (see the module's description)."""

    def __init__(self, on_eof: str, reuse: int, code_cache: str) -> None:
        self.on_eof, self.reuse, self.code_cache = on_eof, reuse, code_cache
        self.death_r, self.death_w = os.pipe()  # only this process holds death_w: EOF = server gone
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.stop: List[int] = []
        self.running: Dict[int, _Running] = {}  # by pid
        self.by_dir: Dict[str, _Running] = {}
        self.workers: Dict[int, _Worker] = {}  # the reused job processes, running a job or idle
        self.by_ev: Dict[int, _Worker] = {}  # by a worker's event pipe
        self.idle: List[_Worker] = []  # idle workers, oldest first
        self.buf = b""
        self.eof = False

    def install_signals(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, lambda *_: self.stop.append(1))
        signal.set_wakeup_fd(self.wake_w)

    def kill(self, r: _Running, reason: str) -> None:
        if r.reason is None:
            r.reason = reason
        try:
            os.killpg(r.pid, signal.SIGKILL)
        except OSError:
            pass

    def forget(self, w: _Worker) -> None:
        """A worker that exits or was let go: its pipes closed, out of the pool."""
        if self.workers.pop(w.pid, None) is None:
            return
        self.by_ev.pop(w.ev_r, None)
        if w in self.idle:
            self.idle.remove(w)
        for fd in (w.ctl_w, w.ev_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def ended(self, r: _Running, code: int, sig: Optional[int]) -> None:
        _emit({"event": "ended", "job_dir": r.job_dir, "exit_code": code,
               "reason": r.reason or ("signal" if sig is not None else "exited"),
               "signal": sig, "seconds": round(time.time() - r.start, 6)})

    def begin(self, job_dir: str, pid: int, timeout: Any) -> None:
        r = _Running(job_dir, pid, time.monotonic() + float(timeout) if timeout else None)
        self.running[pid] = self.by_dir[job_dir] = r
        _emit({"event": "started", "job_dir": job_dir, "pgid": pid})

    def start(self, req: Dict[str, Any]) -> None:
        """Take a run request: to an idle worker of its bundle, else to a new fork."""
        job_dir = req.get("job_dir")
        if not isinstance(job_dir, str) or not job_dir:
            _emit({"event": "error", "job_dir": job_dir, "message": "no job_dir given"})
            return
        job_dir = os.path.abspath(job_dir)
        if job_dir in self.by_dir:
            _emit({"event": "error", "job_dir": job_dir, "message": "this job directory is already running"})
            return
        req["job_dir"] = job_dir
        req.pop("bundle", None)  # only the server names it, from the bundle itself
        key = _bundle_key(job_dir) if self.reuse else None
        if key:
            req["bundle"] = key  # the job process need not hash it again
        if key and self.to_idle_worker(req, key):
            return
        self.fork(req, key)

    def to_idle_worker(self, req: Dict[str, Any], key: str) -> bool:
        """Send ``req`` to an idle worker of bundle ``key``; False if there is none."""
        for w in list(reversed(self.idle)):  # the last used first: its caches are warm
            if w.key != key:
                continue
            self.idle.remove(w)
            try:
                os.write(w.ctl_w, (json.dumps(req) + "\n").encode("utf-8"))
            except OSError:  # it died meanwhile: reap() sees to it
                self.forget(w)
                continue
            self.begin(req["job_dir"], w.pid, req.get("timeout"))
            return True
        return False

    def fork(self, req: Dict[str, Any], key: Optional[str]) -> None:
        """Run ``req`` in a new job process (a reused worker when ``key``, the bundle, is set)."""
        job_dir = req["job_dir"]
        pipes: Tuple[int, ...] = ()
        try:
            if key:
                pipes = os.pipe() + os.pipe()  # ctl_r, ctl_w, ev_r, ev_w
            pid = os.fork()
        except OSError as exc:
            for fd in pipes:
                os.close(fd)
            _emit({"event": "error", "job_dir": job_dir, "message": "cannot fork: %s" % exc})
            return
        if pid == 0:
            self.in_child(pipes)
            if pipes:
                worker_process(req, self.code_cache, pipes[0], pipes[3])
            job_process(req, self.code_cache)
        try:
            os.setpgid(pid, pid)  # also here: no window where a kill misses the group
        except OSError:
            pass
        if pipes and key:
            os.close(pipes[0])
            os.close(pipes[3])
            w = self.workers[pid] = _Worker(pid, key, pipes[1], pipes[2])
            self.by_ev[w.ev_r] = w
        self.begin(job_dir, pid, req.get("timeout"))

    def in_child(self, pipes: Tuple[int, ...]) -> None:
        """In a new job process: a group of its own, none of the server's descriptors."""
        try:
            os.setpgid(0, 0)
            os.dup2(2, 1)  # stdout is the server's event stream: only the server writes there
            others = [fd for w in self.workers.values() for fd in (w.ctl_w, w.ev_r)]
            for fd in [self.death_w, self.wake_r, self.wake_w, 0] + others + list(pipes[1:3]):
                os.close(fd)
            reset_child_signals()
            watch_server(self.death_r)
        except BaseException:  # noqa: BLE001
            os._exit(72)

    def worker_events(self, w: _Worker) -> None:
        """Read what worker ``w`` says: a job's end, and whether it takes another."""
        try:
            chunk = os.read(w.ev_r, 512)
        except OSError:
            chunk = b""
        if not chunk:  # it is exiting: reap() sees to the rest
            self.forget(w)
            return
        w.buf += chunk
        while b"\n" in w.buf:
            line, _, w.buf = w.buf.partition(b"\n")
            parts = line.split()
            r = self.running.pop(w.pid, None)
            if r is None or len(parts) != 3 or parts[0] != b"done":
                continue
            self.by_dir.pop(r.job_dir, None)
            self.ended(r, int(parts[1]), None)
            if parts[2] == b"1" and r.reason is None and not self.eof and not self.stop:
                self.idle.append(w)
                while len(self.idle) > self.reuse:  # the oldest idle one goes (it exits at EOF)
                    self.forget(self.idle[0])

    def reap(self) -> None:
        """Collect job processes that ended, and kill what their groups left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.get(pid)
            if w is not None:
                self.forget(w)
            r = self.running.pop(pid, None)
            if r is None:
                continue
            self.by_dir.pop(r.job_dir, None)
            try:  # the group may hold leftovers of a job that crashed or was killed
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            self.ended(r, -sig if sig is not None else os.WEXITSTATUS(status), sig)

    def read_requests(self) -> None:
        """Read stdin and act on each whole line (at EOF, on the last part too)."""
        chunk = os.read(0, 65536)
        if not chunk:
            self.eof = True
        self.buf += chunk
        while b"\n" in self.buf or (self.eof and self.buf):
            line, _, self.buf = self.buf.partition(b"\n")
            try:
                req = _parse_request(line.decode("utf-8"))
            except ValueError as exc:
                _emit({"event": "error", "job_dir": None, "message": "bad request: %s" % exc})
                continue
            if req is None:
                continue
            if req["op"] == "run":
                self.start(req)
            elif req["op"] == "cancel":
                r = self.by_dir.get(os.path.abspath(str(req.get("job_dir"))))
                if r is not None:
                    self.kill(r, "cancelled")
            else:
                self.stop.append(1)

    def step(self) -> bool:
        """One turn of the event loop; False when the server is to end."""
        if self.stop or (self.eof and (self.on_eof == "kill" or not self.running)):
            return False
        now = time.monotonic()
        deadlines = [r.deadline for r in self.running.values() if r.deadline and r.reason is None]
        wait = max(0.0, min(deadlines) - now) if deadlines else None
        fds = ([self.wake_r] if self.eof else [0, self.wake_r]) + list(self.by_ev)
        ready = select.select(fds, [], [], wait)[0]
        if self.wake_r in ready:
            try:
                os.read(self.wake_r, 512)
            except OSError:
                pass
        for fd in ready:  # a job's end as its worker tells it, before reaping
            w = self.by_ev.get(fd)
            if w is not None:
                self.worker_events(w)
        self.reap()
        if 0 in ready:
            self.read_requests()
        now = time.monotonic()
        for r in list(self.running.values()):
            if r.deadline is not None and r.reason is None and now >= r.deadline:
                self.kill(r, "timeout")
        return True

    def shut_down(self) -> None:
        """Kill every job process (running or idle) and wait for them, at most 10 s."""
        for r in list(self.running.values()):
            self.kill(r, "shutdown")
        for w in list(self.workers.values()):  # idle ones, and any that ended a job after EOF
            if w.pid not in self.running:
                try:
                    os.killpg(w.pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        while (self.running or self.workers) and time.monotonic() < deadline:
            self.reap()
            if self.running or self.workers:
                time.sleep(0.005)
        os.close(self.death_w)


def serve(on_eof: str = "drain", preload: Sequence[str] = (), fsync: bool = True, reuse: int = 0) -> int:
    """Run the job server on stdin/stdout until end of input or shutdown. Returns 0.
    ``reuse``: keep up to that many job processes between jobs, each for further jobs of
    the code bundle it ran (see ``jobprocess.worker_process``); 0: a fresh fork for every job."""
    _prepare(preload)
    code_cache = tempfile.mkdtemp(prefix="%s%s-%d-" % (CODE_CACHE_PREFIX, HOST, os.getpid()))
    _sweep_code_caches(os.path.dirname(code_cache))
    FSYNC[0] = fsync
    server = _Server(on_eof, reuse, code_cache)
    server.install_signals()
    _emit({"event": "ready", "pid": os.getpid()})
    try:
        while server.step():
            pass
    finally:
        server.shut_down()
        shutil.rmtree(code_cache, ignore_errors=True)
    return 0
