"""``JobServer``: a long-lived process that runs many job directories, one fork per job.

It drives ``python -m hither.runtime --serve`` (the protocol is documented in
``hither.runtime.server``): the server process never imports user code and forks a clean child
per job, so two code bundles that share a module name each run their own code. A Slurm
pilot, a warm container or a compute resource holds one server and submits job directories
to it::

    with JobServer() as server:
        run = server.submit(job_dir, timeout=60, log=os.path.join(job_dir, "console.log"))
        end = run.wait()          # JobEnd(exit_code=0, reason="exited", ...)
        status, value, error, ri = read_job_outputs(job_dir, end.exit_code)

Timeouts and ``run.kill()`` kill the job's whole process group; a job that crashes (even
``os._exit`` or a segfault) ends only itself; the server dying (or this object being
closed) ends every job it runs.

``JobServerLauncher`` is the ``hither.plugins.interfaces.Launcher`` over a server (what
``JobHandler.job_dir_launcher()`` of the in-machine handlers gives): it starts the server
on first use, runs up to ``capacity`` job directories at once, and starts a new server
when the last one died::

    launcher = JobServerLauncher(capacity=2)
    code = launcher.launch(job_dir, timeout=60)   # 0: the runner wrote the outcome
    launcher.close()

``hidden_env``: names of environment variables the jobs must not see (a compute resource's
secret): the server process, and so every job forked from it, starts without them.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from hither.errors import HitherError, JobTimeoutError, WorkerDiedError
from hither.plugins.interfaces import Launcher

logger = logging.getLogger("hither.outside.jobserver")


@dataclass(frozen=True)
class JobEnd:
    """How one job directory's run ended.

    ``reason``: ``exited`` (``exit_code`` is the runner's: 0 when outputs were written),
    ``signal`` (it crashed: ``exit_code`` = -signal), ``timeout``, ``cancelled``,
    ``shutdown`` (the server was closed) or ``server-died`` (``exit_code`` None).
    """

    job_dir: str
    exit_code: Optional[int]
    reason: str
    signal: Optional[int] = None
    seconds: float = 0.0


class JobRun:
    """A handle on one submitted job directory (from ``JobServer.submit``)."""

    def __init__(self, server: "JobServer", job_dir: str) -> None:
        self.server = server
        self.job_dir = job_dir
        self.pgid: Optional[int] = None  # the job's process group, once started
        self._end: Optional[JobEnd] = None
        self._done = threading.Event()
        self._callbacks: List[Callable[[JobEnd], None]] = []
        self._lock = threading.Lock()

    def wait(self, timeout: Optional[float] = None) -> JobEnd:
        """Wait for the job to end; ``TimeoutError`` if ``timeout`` seconds pass first."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job directory {self.job_dir} still running after {timeout} s")
        assert self._end is not None
        return self._end

    def done(self) -> bool:
        return self._done.is_set()

    def kill(self) -> None:
        """Kill the job's process tree (it ends with reason ``cancelled``)."""
        self.server.cancel(self.job_dir)

    def add_done_callback(self, cb: Callable[[JobEnd], None]) -> None:
        """Call ``cb(end)`` when the job ends (from the server's reader thread; at once if
        it already has)."""
        with self._lock:
            if self._end is None:
                self._callbacks.append(cb)
                return
        cb(self._end)

    def _finish(self, end: JobEnd) -> None:
        with self._lock:
            if self._end is not None:
                return
            self._end = end
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for cb in callbacks:
            try:
                cb(end)
            except Exception:  # a callback's bug must not stop the reader thread
                logger.exception("job server callback for %s failed", self.job_dir)


def job_environment(env: Optional[Dict[str, str]], hidden: Sequence[str]) -> Optional[Dict[str, str]]:
    """The environment of a job server: ``env`` (None: this process's) without the variables
    named in ``hidden``; ``env`` itself when nothing is hidden."""
    if not hidden:
        return env
    base = dict(os.environ if env is None else env)
    for name in hidden:
        base.pop(name, None)
    return base


class JobServer:
    """One ``python -m hither.runtime --serve`` process and the runs submitted to it.

    ``python``: the interpreter (default: this one); ``preload``: modules the server imports
    once so that jobs need not (e.g. ``["numpy"]``); ``env``/``cwd`` of the server process;
    ``fsync=False``: jobs write their outputs without fsync, for a caller that reads them on
    this machine as soon as each job ends (``hither.runtime.jobdir.FSYNC``); ``reuse=N``: keep up
    to N job processes for further jobs of the code bundle they ran (``--reuse``: module
    state then carries from one job of a bundle to the next, as in a pool's workers);
    ``hidden_env``: names of environment variables the server and its jobs start without.
    """

    def __init__(self, python: Optional[str] = None, preload: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
                 fsync: bool = True, reuse: int = 0, hidden_env: Sequence[str] = ()) -> None:
        self.python = python or sys.executable
        self.hidden_env = list(hidden_env)
        self.reuse = reuse
        self.preload = list(preload)
        self.fsync = fsync
        self.env = env
        self.cwd = cwd
        self.proc: "Optional[subprocess.Popen[bytes]]" = None
        self._runs: Dict[str, JobRun] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ready = threading.Event()
        self._reader: Optional[threading.Thread] = None
        self._closed = False  # close() was called
        self._gone = False  # the server's event stream ended

    # ------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 30.0) -> "JobServer":
        """Start the server process and wait until it is ready."""
        if self.proc is not None:
            return self
        cmd = [self.python, "-m", "hither.runtime", "--serve", "--on-eof", "kill"]
        if self.preload:
            cmd += ["--preload", ",".join(self.preload)]
        if not self.fsync:
            cmd.append("--no-fsync")
        if self.reuse:
            cmd += ["--reuse", str(int(self.reuse))]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=job_environment(self.env, self.hidden_env), cwd=self.cwd,
                                     close_fds=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name=f"hither-jobserver-{self.proc.pid}")
        self._reader.start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            code = self.proc.poll()
            self.close()
            raise HitherError(f"the hither job server ({' '.join(cmd)}) did not start within {timeout} s "
                              f"(exit code {code}); is hither installed for {self.python}?")
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Kill running jobs and stop the server (their runs end with reason ``shutdown``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        proc = self.proc
        if proc is None:
            return
        try:
            with self._write_lock:
                assert proc.stdin is not None
                proc.stdin.close()  # --on-eof kill: the server kills its jobs and exits
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)

    def __enter__(self) -> "JobServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return (self.proc is not None and self.proc.poll() is None and not self._closed
                and not self._gone)

    # ------------------------------------------------------------------ jobs
    def submit(self, job_dir: str, timeout: Optional[float] = None, log: Optional[str] = None,
               env: Optional[Dict[str, str]] = None) -> JobRun:
        """Run ``job_dir`` in a fresh fork. ``timeout`` (s) kills its process tree; ``log``
        receives its console output as it runs; ``env`` is added to its environment."""
        if self.proc is None:
            self.start()
        job_dir = os.path.abspath(job_dir)
        run = JobRun(self, job_dir)
        req: Dict[str, Any] = {"op": "run", "job_dir": job_dir}
        if timeout:
            req["timeout"] = float(timeout)
        if log:
            req["log"] = os.path.abspath(log)
        if env:
            req["env"] = dict(env)
        with self._lock:
            if self._closed or not self.alive:
                raise HitherError("this job server was closed or has died; start a new one")
            if job_dir in self._runs:
                raise HitherError(f"job directory {job_dir} is already running in this job server")
            self._runs[job_dir] = run
        try:
            self._send(req)
        except OSError as exc:
            with self._lock:
                self._runs.pop(job_dir, None)
            raise HitherError(f"the job server stopped taking jobs: {exc}") from exc
        return run

    def cancel(self, job_dir: str) -> bool:
        """Kill the run of ``job_dir`` (its whole process group); False if none is running."""
        job_dir = os.path.abspath(job_dir)
        with self._lock:
            if job_dir not in self._runs:
                return False
        try:
            self._send({"op": "cancel", "job_dir": job_dir})
        except OSError:
            return False
        return True

    def running(self) -> List[str]:
        with self._lock:
            return list(self._runs)

    # ------------------------------------------------------------------ internals
    def _send(self, req: Dict[str, Any]) -> None:
        data = (json.dumps(req) + "\n").encode("utf-8")
        with self._write_lock:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    logger.warning("job server: unreadable line %r", line[:200])
                    continue
                kind = ev.get("event")
                if kind == "ready":
                    self._ready.set()
                elif kind == "started":
                    with self._lock:
                        run = self._runs.get(ev["job_dir"])
                    if run is not None:
                        run.pgid = ev.get("pgid")
                elif kind == "ended":
                    with self._lock:
                        run = self._runs.pop(ev["job_dir"], None)
                    if run is not None:
                        run._finish(JobEnd(ev["job_dir"], ev.get("exit_code"), ev.get("reason", "exited"),
                                           ev.get("signal"), float(ev.get("seconds") or 0.0)))
                elif kind == "error":
                    logger.error("job server: %s (%s)", ev.get("message"), ev.get("job_dir"))
                    with self._lock:
                        run = self._runs.pop(ev.get("job_dir") or "", None)
                    if run is not None:
                        run._finish(JobEnd(run.job_dir, None, "refused: " + str(ev.get("message"))))
        except (OSError, ValueError):
            pass
        finally:
            self._ready.set()
            try:
                self.proc.stdout.close()
            except OSError:
                pass
            with self._lock:
                self._gone = True
                left, self._runs = list(self._runs.values()), {}
            for run in left:  # the server ended without reporting them: they are gone
                run._finish(JobEnd(run.job_dir, None, "server-died"))


class JobServerLauncher(Launcher):
    """Runs job directories in one long-lived ``JobServer``, a fork of a warm interpreter per
    job (milliseconds, where a fresh interpreter per job costs ~60 ms), up to ``capacity``
    at once (``launch`` waits for a free slot).

    The server starts on the first ``launch`` (from any thread); one that died (killed,
    out of memory) fails the runs it held with ``WorkerDiedError`` at once, and the next
    ``launch`` starts a new one. ``preload``: modules the server imports once so that jobs
    need not (hither itself by default: ~0.1 s per job otherwise); the server never imports
    user code. ``reuse=True``: a job process that ended cleanly runs the next job of the
    same code bundle (no fork: ~5 ms less per job; module state carries over, as in a
    ``ParallelJobHandler``'s workers, so the in-machine handlers ask for it). ``hidden_env``
    (a list, extended by its owner before the first launch): environment variables the jobs
    must not see. ``kill(job_dir)``
    kills that run's process group; ``close()`` stops the server and every run still going.
    Example::

        launcher = JobServerLauncher(capacity=4)
        try:
            code = launcher.launch(job_dir, timeout=60)
        finally:
            launcher.close()
    """

    name = "the hither job server"
    needs_runner_file = False  # the server and its job processes hold the runtime

    def __init__(self, capacity: int = 1, python: Optional[str] = None,
                 preload: Sequence[str] = ("hither",), env: Optional[Dict[str, str]] = None,
                 start_timeout: float = 30.0, reuse: bool = False, hidden_env: Sequence[str] = ()) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise HitherError(f"JobServerLauncher(capacity=...) needs a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.python, self.preload, self.env = python, list(preload), env
        self.start_timeout = start_timeout
        self.reuse = bool(reuse)
        self.hidden_env: List[str] = list(hidden_env)
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._server: Optional[JobServer] = None
        self._runs: Dict[str, Optional[JobRun]] = {}  # job_dir -> its run (None: not sent yet)
        self._killed: set = set()  # job dirs killed before their run was sent
        self._closed = False

    def __repr__(self) -> str:
        return f"JobServerLauncher(capacity={self.capacity}, reuse={self.reuse})"

    @property
    def server(self) -> Optional[JobServer]:
        """The current server, if one was started."""
        return self._server

    def _live_server(self) -> JobServer:
        with self._lock:
            if self._closed:
                raise HitherError("this JobServerLauncher was closed; make a new one")
            server = self._server
            if server is None or not server.alive:
                if server is not None:
                    logger.warning("the hither job server (pid %s) died; starting a new one",
                                   server.proc.pid if server.proc else "?")
                    server.close()  # reaps it
                # its caller reads each job's outputs here as soon as the job ends: no fsync
                server = JobServer(self.python, self.preload, self.env, fsync=False,
                                   reuse=(self.capacity or 0) if self.reuse else 0, hidden_env=self.hidden_env)
                self._server = server
                server.start(self.start_timeout)  # under the lock: one start for all threads
            return server

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        job_dir = os.path.abspath(job_dir)
        with self._lock:
            if job_dir in self._runs:
                raise HitherError(f"job directory {job_dir} is already running in this launcher")
            self._runs[job_dir] = None  # registered: a kill() from now on is remembered
        try:
            with self._slots:
                with self._lock:
                    if job_dir in self._killed:
                        return -signal.SIGKILL  # killed before it started: as a killed run
                run = self._live_server().submit(job_dir, timeout=timeout)
                with self._lock:
                    self._runs[job_dir] = run
                    killed = job_dir in self._killed
                if killed:
                    run.kill()
                end = run.wait()
        finally:
            with self._lock:
                self._runs.pop(job_dir, None)
                self._killed.discard(job_dir)
        if end.reason == "timeout":
            raise JobTimeoutError(f"the runner of {job_dir} ran past {timeout} s and was killed")
        if end.reason == "server-died":
            raise WorkerDiedError(f"the hither job server running {job_dir} died before the job ended "
                                  "(killed, or out of memory?); the job was stopped with it")
        if end.exit_code is None:  # the server refused the request
            raise HitherError(f"the hither job server could not run {job_dir}: {end.reason}")
        return end.exit_code

    def kill(self, job_dir: str) -> None:
        job_dir = os.path.abspath(job_dir)
        with self._lock:
            if job_dir not in self._runs:
                return
            self._killed.add(job_dir)
            run = self._runs[job_dir]
        if run is not None:
            run.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.close()
