"""``JobServer``: a long-lived process that runs many job directories, one fork per job.

It drives ``python -m hither.runner --serve`` (the protocol is documented in
``hither/runner.py``): the server process never imports user code and forks a clean child
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
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from .errors import HitherError

logger = logging.getLogger("hither.jobserver")


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


class JobServer:
    """One ``python -m hither.runner --serve`` process and the runs submitted to it.

    ``python``: the interpreter (default: this one); ``preload``: modules the server imports
    once so that jobs need not (e.g. ``["numpy"]``); ``env``/``cwd`` of the server process.
    """

    def __init__(self, python: Optional[str] = None, preload: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None) -> None:
        self.python = python or sys.executable
        self.preload = list(preload)
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
        cmd = [self.python, "-m", "hither.runner", "--serve", "--on-eof", "kill"]
        if self.preload:
            cmd += ["--preload", ",".join(self.preload)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=self.env, cwd=self.cwd, close_fds=True)
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
