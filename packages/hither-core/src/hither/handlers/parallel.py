"""``hi.ParallelJobHandler``: a pool of worker processes on this machine."""
from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import logging
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from .. import transfer
from ..outcome import result_error
from ..errors import ConfigError, HitherError, JobTimeoutError, WorkerDiedError
from ..interfaces import JobHandler

if TYPE_CHECKING:  # pragma: no cover
    from ..protocols import JobFunction
    from ..job import Job

logger = logging.getLogger("hither.handlers.parallel")

_PREFETCH_LIMIT = 64 * 1024  # prefetch a job to a busy worker only if its message is this small
_all_handlers: "weakref.WeakSet[ParallelJobHandler]" = weakref.WeakSet()


def function_ref(fn: "JobFunction") -> Tuple[Any, ...]:
    """How a worker finds ``fn``: by module and name, or by value for a ``__main__`` script
    or a nested function (which a worker cannot import)."""
    ref = getattr(fn, "_worker_ref", None)
    if ref is None:
        if fn.module == "__main__" or "<locals>" in fn.qualname:
            import cloudpickle

            ref = ("val", cloudpickle.dumps(fn.raw), fn.source_file or "")
        else:
            ref = ("ref", fn.module, fn.qualname, fn.source_file or "")
        fn._worker_ref = ref  # type: ignore[attr-defined]
    return ref


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGKILL:
            return "was killed by SIGKILL (often the out-of-memory killer; check memory use)"
        if sig == signal.SIGSEGV:
            return "crashed with a segmentation fault (SIGSEGV) in native code"
        return f"was killed by signal {name}"
    return f"exited with code {code} (e.g. os._exit() or a fatal error) without finishing the job"


class _Worker:
    def __init__(self, index: int) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, HITHER_IN_WORKER="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hither._worker", str(child_sock.fileno())],
            pass_fds=(child_sock.fileno(),), env=env, cwd=os.getcwd())
        child_sock.close()
        self.conn = Connection(os.dup(parent_sock.fileno()))
        parent_sock.close()
        self.conn.send({"sys_path": list(sys.path)})
        self.index = index
        self.inflight: "collections.OrderedDict[str, Job]" = collections.OrderedDict()
        self.deadline: Optional[float] = None
        self.send_lock = threading.Lock()

    @property
    def running(self) -> Optional["Job"]:
        return next(iter(self.inflight.values()), None)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            logger.error("worker pid %s did not die after SIGKILL", self.proc.pid)
        self.conn.close()


class ParallelJobHandler(JobHandler):
    """Runs jobs in a pool of ``num_workers`` worker processes on this machine.

    Workers are started once (``python -m hither._worker``, never forked, so it is safe in
    a program with threads) and reused. Large arrays move through shared memory. A job
    can be cancelled while queued or running (its worker is killed and replaced), is killed
    at ``hi.Config(job_timeout=...)``, and a worker that dies fails only its current job::

        jh = hi.ParallelJobHandler(num_workers=4)
        with hi.Config(job_handler=jh):
            jobs = [sqr.run(x=i) for i in range(8)]
        hi.wait()
    """

    name = "parallel"
    supports_timeout = True

    def __init__(self, num_workers: Optional[int] = None) -> None:
        if num_workers is None:
            num_workers = os.cpu_count() or 1
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ConfigError(f"ParallelJobHandler(num_workers=...) needs a positive integer, "
                              f"got {num_workers!r}")
        self.num_workers = num_workers
        self._lock = threading.RLock()
        self._queue: Deque["Job"] = collections.deque()
        self._workers: List[Optional[_Worker]] = [None] * num_workers
        self._io: Optional[threading.Thread] = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._container_slots = threading.Semaphore(num_workers)
        self._completer_pool: "Optional[cf.ThreadPoolExecutor]" = None
        _all_handlers.add(self)
        # start the pool now, so workers warm up while the caller prepares its jobs; but not
        # inside a worker, which may import a module that makes a handler at top level
        if not os.environ.get("HITHER_IN_WORKER"):
            with self._lock:
                for i in range(num_workers):
                    self._workers[i] = _Worker(i)
                self._ensure_io()

    def __repr__(self) -> str:
        return f"hi.ParallelJobHandler(num_workers={self.num_workers})"

    # ------------------------------------------------------------------ JobHandler
    def submit(self, job: "Job", inline: bool) -> None:
        if self._closed:
            raise HitherError("this ParallelJobHandler was shut down (hi.reset()); create a new one")
        if job.container is not None:
            # the container is the job's process: drive it from a thread, num_workers at a time
            threading.Thread(target=self._run_container, args=(job,), daemon=True,
                             name=f"hither-container-{job.id}").start()
            return
        ref = function_ref(job.function)
        payload, paths = transfer.dumps(job.resolved_kwargs or {})
        job.handler_data = (ref, payload, paths)
        with self._lock:
            if self._closed:  # shut down meanwhile
                transfer.discard(paths)
                raise HitherError("this ParallelJobHandler was shut down (hi.reset()); create a new one")
            self._queue.append(job)
            self._ensure_io()
            self._pump()

    def _run_container(self, job: "Job") -> None:
        from ..outside import container_launcher, run_outside

        with self._container_slots:
            if job.is_done():
                return
            job.report_running()
            try:
                launcher = container_launcher(job)
            except Exception as exc:  # noqa: BLE001 - e.g. the engine went away since .run()
                job.report_error(exc)
                return
            run_outside(job, launcher)

    def cancel(self, job: "Job") -> bool:
        if job.container is not None:
            from ..outside import cancel_outside

            return cancel_outside(job)
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                self._cleanup(job)
                job.report_cancelled()
                return True
            for w in self._workers:
                if w is None or job.id not in w.inflight:
                    continue
                if w.running is job:
                    self._retire(w, requeue=True)
                    self._cleanup(job)
                    job.report_cancelled()
                    self._pump()
                else:  # prefetched, not started: tell the worker to skip it
                    del w.inflight[job.id]
                    self._send(w, ("cancel", job.id))
                    self._cleanup(job)
                    job.report_cancelled()
                return True
        return False

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            for w in self._workers:
                if w is not None:
                    pending.extend(w.inflight.values())
                    w.inflight.clear()
                    self._retire(w, requeue=False)
            self._workers = [None] * self.num_workers
        self._wake()
        for job in pending:
            self._cleanup(job)
            job.report_cancelled()
        if self._io is None:  # never started: nobody else will close the wake pipe
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
        elif wait and self._io is not threading.current_thread():
            self._io.join(5)
        if self._completer_pool is not None:
            self._completer_pool.shutdown(wait=wait)

    # ------------------------------------------------------------------ internals
    def _ensure_io(self) -> None:
        if self._io is None:
            self._io = threading.Thread(target=self._io_loop, name="hither-parallel-io", daemon=True)
            self._io.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _send(self, w: _Worker, msg: Tuple[Any, ...]) -> None:
        with w.send_lock:
            w.conn.send(msg)

    def _pump(self) -> None:
        """Hand queued jobs to idle workers (and small ones to busy workers, one deep)."""
        if not self._queue:
            return
        for depth in (0, 1):
            for i in range(self.num_workers):
                if not self._queue:
                    return
                w = self._workers[i]
                if w is None:
                    if depth:
                        continue
                    w = self._workers[i] = _Worker(i)
                    self._wake()  # the I/O loop must watch the new worker's connection
                if len(w.inflight) != depth:
                    continue
                job = self._queue[0]
                ref, payload, paths = job.handler_data
                if depth and len(payload) > _PREFETCH_LIMIT:
                    continue
                self._queue.popleft()
                w.inflight[job.id] = job
                if depth == 0:
                    self._started(w, job)
                try:
                    self._send(w, ("job", job.id, ref, payload, paths, job.function.no_resolve_input_files))
                except (OSError, EOFError):
                    pass  # the worker died: the I/O loop sees EOF and handles its jobs

    def _started(self, w: _Worker, job: "Job") -> None:
        timeout = job.config.job_timeout
        w.deadline = time.monotonic() + timeout if timeout else None
        if timeout and threading.current_thread() is not self._io:
            self._wake()  # the I/O loop must start watching this deadline
        job.report_running()

    def _cleanup(self, job: "Job") -> None:
        data = job.handler_data
        if data:
            transfer.discard(data[2])
        job.handler_data = None

    def _retire(self, w: _Worker, requeue: bool) -> None:
        """Kill worker ``w``; its not-yet-started jobs go back to the front of the queue."""
        running = w.running
        rest = [j for j in w.inflight.values() if j is not running]
        w.inflight.clear()
        w.kill()
        if requeue:
            self._queue.extendleft(reversed(rest))
        if 0 <= w.index < len(self._workers) and self._workers[w.index] is w:
            self._workers[w.index] = None

    def _io_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        watched: Dict[_Worker, int] = {}  # worker -> the fd it was registered under
        while True:
            try:
                with self._lock:
                    if self._closed:
                        break
                    live = [w for w in self._workers if w is not None]
                    for w in [w for w in watched if w not in live]:
                        # by fd number: the connection may be closed already, and its
                        # number reused by a new worker's connection
                        sel.unregister(watched.pop(w))
                    for w in live:
                        if w not in watched:
                            fd = w.conn.fileno()
                            sel.register(fd, selectors.EVENT_READ, w)
                            watched[w] = fd
                    deadlines = [w.deadline for w in live if w.deadline and w.inflight]
                timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                events = sel.select(timeout)
                for key, _ in events:
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                    elif key.data in watched and self._workers[key.data.index] is key.data:
                        self._on_readable(key.data)
                self._check_deadlines()
            except Exception:  # the loop must survive anything, or every waiter would hang
                logger.exception("hither ParallelJobHandler I/O loop error (continuing)")
                time.sleep(0.01)
        sel.close()
        for fd in (self._wake_r, self._wake_w):  # closed here, where they are last used
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_readable(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._on_worker_died(w)
            return
        except Exception as exc:  # a result that cannot be unpickled here
            logger.error("could not read a result from worker %s: %s", w.proc.pid, exc)
            msg = None
        with self._lock:
            if msg is None:
                job = w.running
                if job is not None:
                    del w.inflight[job.id]
            else:
                job = w.inflight.pop(msg[1], None)
            nxt = w.running
            if nxt is not None:
                self._started(w, nxt)
            else:
                w.deadline = None
            self._pump()
        if job is None:
            if msg is not None:
                transfer.discard(msg[3] if msg[0] == "ok" else [])  # a cancelled job's result
            return
        if job.config.job_cache is not None:
            # storing in a cache may take a while: keep this loop free to feed the workers
            self._completer().submit(self._finish, job, msg)
        else:
            self._finish(job, msg)

    def _completer(self) -> "cf.ThreadPoolExecutor":
        with self._lock:
            if self._completer_pool is None:
                self._completer_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="hither-complete")
            return self._completer_pool

    def _finish(self, job: "Job", msg: Optional[Tuple[Any, ...]]) -> None:
        self._cleanup(job)
        if msg is None:
            job.report_error(HitherError(f"the result of {job.function_name} could not be read"))
            return
        kind, _, a, b, ri = msg
        if kind == "ok":
            try:
                value = transfer.loads(a, b, unlink=True)
            except Exception as exc:
                job.report_error(HitherError(f"the result of {job.function_name} could not be "
                                             f"unpickled here: {type(exc).__name__}: {exc}"), ri)
                return
            bad = result_error(value)
            if bad is not None:
                job.report_error(bad, ri)
            else:
                job.report_result(value, ri)
            return
        from ..error_info import attach_traceback, from_error_info
        from ..models import ErrorInfo

        info = ErrorInfo(**a)
        error: Optional[BaseException] = None
        if b is not None:
            try:
                error = pickle.loads(b)
            except Exception:
                error = None
        if error is None:
            error = from_error_info(info, where=f"worker pid {ri['pid'] if ri else '?'}")
        else:
            attach_traceback(error, info.traceback, where=f"worker pid {ri['pid'] if ri else '?'}")
        job.report_error(error, ri)

    def _on_worker_died(self, w: _Worker) -> None:
        try:
            code = w.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        with self._lock:
            job = w.running
            self._retire(w, requeue=True)
            self._pump()
        if job is not None:
            self._cleanup(job)
            job.report_error(WorkerDiedError(
                f"the worker process (pid {w.proc.pid}) running {job.function_name} ({job.id}) "
                f"{_describe_exit(code)}; the handler replaced it and goes on with other jobs"))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        expired: List[Tuple["Job", float]] = []
        with self._lock:
            for w in list(self._workers):
                if w is None or w.deadline is None or now < w.deadline:
                    continue
                job = w.running
                if job is None:
                    continue
                self._retire(w, requeue=True)
                expired.append((job, job.config.job_timeout or 0.0))
            if expired:
                self._pump()
        for job, timeout in expired:
            self._cleanup(job)
            job.report_error(JobTimeoutError(
                f"job {job.function_name} ({job.id}) was killed after running longer than "
                f"job_timeout={timeout} s; raise hi.Config(job_timeout=...) if it needs longer"))


@atexit.register
def _shutdown_all() -> None:
    for h in list(_all_handlers):
        try:
            h.shutdown(wait=False)
        except Exception:  # pragma: no cover - exiting anyway
            pass
