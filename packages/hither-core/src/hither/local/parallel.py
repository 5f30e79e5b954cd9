"""``hi.ParallelJobHandler``: a pool of worker processes on this machine."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import math
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Set, Tuple, cast

from hither.local import transfer
from hither.local import messages as P
from hither.local.refs import function_ref, shipped_ref
from hither.values.outcome import rebuild_error
from hither.errors import ConfigError, HitherError, JobTimeoutError, WorkerDiedError
from hither.plugins.interfaces import JobHandler, Launcher
from hither.plugins.lifetime import shut_down_at_exit

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

logger = logging.getLogger("hither.local.parallel")

_PREFETCH_LIMIT = 64 * 1024  # prefetch a job to a busy worker only if its message is this small
# jobs handed to a busy worker ahead of time: one while jobs take long (a slow job delays
# only the one queued behind it), more while recent jobs were tiny, to cover about
# _PREFETCH_SECONDS of work (the threads of this process may wait ~5 ms for the GIL). The
# cost: a job that turns out long after a run of tiny ones holds up to 16 small jobs.
_PREFETCH_DEPTH = 1
_PREFETCH_DEPTH_MAX = 16
_PREFETCH_SECONDS = 0.005
#: longest single wait of the I/O loop: a far deadline (job_timeout of weeks) is reached in
#: steps, since selectors cannot wait longer than about 24 days
_MAX_WAIT = 3600.0
#: where a worker's exit cannot be watched through a pidfd, poll for it this often
_POLL_EXIT = 0.2
#: seconds a new worker may take to start (Python, its imports: until its Ready) before it
#: is killed and its job fails with WorkerDiedError, whatever the job's job_timeout (which
#: counts from the Ready); ``$HITHER_WORKER_START_GRACE`` sets another value
START_GRACE = 60.0
GRACE_ENV = "HITHER_WORKER_START_GRACE"
_swept = [False]


def start_grace() -> float:
    """``$HITHER_WORKER_START_GRACE`` seconds, or ``START_GRACE`` when it is unset or empty;
    anything but a positive finite number is a ``ConfigError`` naming the variable."""
    text = os.environ.get(GRACE_ENV, "").strip()
    if not text:
        return START_GRACE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:  # also NaN
        raise ConfigError(f"{GRACE_ENV}={text!r}: it must be a positive finite number of seconds "
                          f"(how long a ParallelJobHandler worker may take to start; default "
                          f"{START_GRACE:g}); set such a number or unset it")
    return value


def _sweep_once() -> None:
    """Remove shared-memory buffers left by programs that died, once per process."""
    if not _swept[0]:
        _swept[0] = True
        swept = transfer.sweep_dead_buffers()
        if swept:
            logger.info("removed %d shared-memory buffer(s) of dead hither programs", len(swept))


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


class _Prepared:
    """A queued job's ``handler_data``: its message parts, made once at ``submit``."""

    __slots__ = ("ref", "payload", "paths", "cwd")

    def __init__(self, ref: Tuple[Any, ...], payload: bytes, paths: List[str], cwd: str) -> None:
        self.ref, self.payload, self.paths, self.cwd = ref, payload, paths, cwd


class _Worker:
    """One worker process. It leads its own session and process group: the terminal's
    Ctrl-C does not reach it, and ``kill`` ends it with every process its job started."""

    def __init__(self, index: int, grace: float) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, HITHER_IN_WORKER="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hither.local.worker", str(child_sock.fileno())],
            pass_fds=(child_sock.fileno(),), env=env, cwd=os.getcwd(),
            start_new_session=hasattr(os, "setsid"))
        child_sock.close()
        self.conn = P.Channel(parent_sock)
        # the worker's exit, seen even when a process it forked keeps the socket open
        self.pidfd: Optional[int] = None
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(self.proc.pid)
            except OSError:
                self.pidfd = None
        self.conn.send(P.Init(list(sys.path), os.getpid()))
        self.index = index
        self.inflight: "collections.OrderedDict[str, Job]" = collections.OrderedDict()
        self.deadline: Optional[float] = None
        self.ready = False  # it sent Ready: start-up (Python, imports) is behind it
        self.start_deadline = time.monotonic() + grace  # killed if not Ready by then
        self.send_lock = threading.Lock()
        self.exited = False  # its process ended: hand it no more jobs
        #: code identities of the functions sent to it (each once: ``refs.shipped_ref``)
        self.shipped: Set[str] = set()

    @property
    def running(self) -> Optional["Job"]:
        return next(iter(self.inflight.values()), None)

    def kill(self) -> None:
        """SIGKILL the worker's process group (the worker and what its job started)."""
        try:
            if hasattr(os, "killpg"):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group outlives a dead leader
            else:  # pragma: no cover - not POSIX
                self.proc.kill()
        except OSError:  # no process left in the group
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            logger.error("worker pid %s did not die after SIGKILL", self.proc.pid)
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ParallelJobHandler(JobHandler):
    """Runs jobs in a pool of ``num_workers`` worker processes on this machine.

    Workers are started once (``python -m hither.local.worker``, never forked, so it is safe in
    a program with threads) and reused. Large arrays move through shared memory. A job
    can be cancelled while queued or running (its worker is killed and replaced), is killed
    at ``hi.Config(job_timeout=...)``, and a worker that dies, or does not start within 60 s
    (``$HITHER_WORKER_START_GRACE``), fails only its current job (``WorkerDiedError``)::

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
        self._start_grace = start_grace()
        self._lock = threading.RLock()
        self._queue: Deque["Job"] = collections.deque()
        self._workers: List[Optional[_Worker]] = [None] * num_workers
        self._io: Optional[threading.Thread] = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._container_slots = threading.Semaphore(num_workers)
        self._completer_pool: "Optional[cf.ThreadPoolExecutor]" = None
        self._depth = _PREFETCH_DEPTH
        self._avg_run = 1.0  # seconds, a moving average of recent jobs' run times
        shut_down_at_exit(self)
        _sweep_once()
        # start the pool now, so workers warm up while the caller prepares its jobs; but not
        # inside a worker, which may import a module that makes a handler at top level
        if not os.environ.get("HITHER_IN_WORKER"):
            with self._lock:
                for i in range(num_workers):
                    self._workers[i] = _Worker(i, self._start_grace)
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
        ref = function_ref(job.function, job.code_identity)
        payload, paths = transfer.dumps(job.resolved_kwargs or {})
        # the worker runs the job in the folder this program is in at .run(), as an
        # in-process job would (relative paths in the job mean the same thing)
        job.handler_data = _Prepared(ref, payload, paths, os.getcwd())
        with self._lock:
            if self._closed:  # shut down meanwhile
                transfer.discard(paths)
                raise HitherError("this ParallelJobHandler was shut down (hi.reset()); create a new one")
            self._queue.append(job)
            self._ensure_io()
            self._pump()

    def _run_container(self, job: "Job") -> None:
        from hither.outside.path import container_launcher, run_outside

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
            from hither.outside.path import cancel_outside

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
                    self._send(w, P.CancelJob(job.id))
                    self._cleanup(job)
                    job.report_cancelled()
                return True
        return False

    def job_dir_launcher(self) -> Optional[Launcher]:
        """Up to ``num_workers`` job directories at once in a warm job server, whose job
        processes are reused for further jobs of the same code bundle as this pool's
        workers are (the workers themselves import user code of one program, so they
        cannot run job directories of different code bundles side by side)."""
        from hither.outside.jobserver import JobServerLauncher

        return JobServerLauncher(capacity=self.num_workers, reuse=True)

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

    def _send(self, w: _Worker, msg: Any) -> None:
        with w.send_lock:
            w.conn.send_many((msg,))

    def _pump(self) -> None:
        """Hand queued jobs to idle workers, then small ones to busy workers, a few deep (so
        a worker never waits for this process between jobs), least loaded first; one write
        per worker."""
        if not self._queue:
            return
        for i in range(self.num_workers):
            if self._workers[i] is None:
                self._workers[i] = _Worker(i, self._start_grace)
                self._wake()  # the I/O loop must watch the new worker's connection
        workers = [w for w in self._workers if w is not None and not w.exited]
        out: Dict[_Worker, List[Any]] = {}
        while self._queue and workers:
            w = min(workers, key=lambda x: len(x.inflight))
            depth = len(w.inflight)
            job = self._queue[0]
            data = cast(_Prepared, job.handler_data)  # queued jobs were prepared by submit
            if depth > self._depth or (depth and len(data.payload) > _PREFETCH_LIMIT):
                break
            self._queue.popleft()
            w.inflight[job.id] = job
            if depth == 0:
                self._started(w, job)
            out.setdefault(w, []).append(
                P.RunJob(job.id, shipped_ref(data.ref, w), data.payload, data.paths,
                         job.function.no_resolve_input_files, data.cwd))
        for w, msgs in out.items():
            try:
                with w.send_lock:
                    w.conn.send_many(msgs)
            except (OSError, EOFError):
                pass  # the worker died: the I/O loop sees its exit and handles its jobs

    def _learn(self, done: List[Tuple["Job", Any]]) -> None:
        """Adjust the prefetch depth to how long jobs have been taking."""
        for _, msg in done:
            ri = msg.runtime_info if msg is not None else None
            if ri and "end_time" in ri and "start_time" in ri:
                self._avg_run = 0.8 * self._avg_run + 0.2 * max(0.0, ri["end_time"] - ri["start_time"])
        depth = int(_PREFETCH_SECONDS / max(self._avg_run, 1e-6))
        self._depth = min(_PREFETCH_DEPTH_MAX, max(_PREFETCH_DEPTH, depth))

    def _started(self, w: _Worker, job: "Job", report: bool = True) -> None:
        """``job`` is the one worker ``w`` runs now: its job_timeout counts from here, or
        from the worker's Ready while it is still starting (its start_deadline bounds that)."""
        timeout = job.config.job_timeout
        w.deadline = time.monotonic() + timeout if timeout and w.ready else None
        if w.deadline is not None and threading.current_thread() is not self._io:
            self._wake()  # the I/O loop must start watching this deadline
        if report:
            job.report_running()

    def _cleanup(self, job: "Job") -> None:
        data = job.handler_data
        if isinstance(data, _Prepared):
            transfer.discard(data.paths)
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
        watched: Dict[_Worker, List[int]] = {}  # worker -> the fds it was registered under
        while True:
            try:
                with self._lock:
                    if self._closed:
                        break
                    live = [w for w in self._workers if w is not None]
                    for w in [w for w in watched if w not in live]:
                        # by fd number: the connection may be closed already, and its
                        # number reused by a new worker's connection
                        for fd in watched.pop(w):
                            sel.unregister(fd)
                    for w in live:
                        if w not in watched:
                            fds = [w.conn.fileno()]
                            sel.register(fds[0], selectors.EVENT_READ, w)
                            if w.pidfd is not None:
                                fds.append(w.pidfd)
                                sel.register(w.pidfd, selectors.EVENT_READ, (w,))
                            watched[w] = fds
                    deadlines = [w.deadline for w in live if w.deadline and w.inflight]
                    deadlines += [w.start_deadline for w in live if not w.ready]
                    poll_exit = any(w.pidfd is None for w in live)
                now = time.monotonic()
                timeout = min(max(0.0, min(deadlines) - now), _MAX_WAIT) if deadlines else None
                if poll_exit:
                    timeout = _POLL_EXIT if timeout is None else min(timeout, _POLL_EXIT)
                events = sel.select(timeout)
                for key, _ in events:
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                    elif isinstance(key.data, tuple):  # a pidfd: the worker process ended
                        w = key.data[0]
                        if w in watched and self._workers[w.index] is w:
                            self._on_worker_exit(w)
                    elif key.data in watched and self._workers[key.data.index] is key.data:
                        self._on_readable(key.data)
                if poll_exit:
                    for w in live:
                        if w.pidfd is None and self._workers[w.index] is w and w.proc.poll() is not None:
                            self._on_worker_exit(w)
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

    def _on_worker_exit(self, w: _Worker) -> None:
        """The worker process ended: take what it sent before dying, then fail its job."""
        w.exited = True
        msgs = w.conn.drain()
        if msgs and self._workers[w.index] is w:
            self._on_messages(w, msgs)
        if self._workers[w.index] is w:
            self._on_worker_died(w)

    def _on_readable(self, w: _Worker) -> None:
        try:
            msgs: List[Any] = w.conn.read_available()
        except (EOFError, OSError):
            self._on_worker_died(w)
            return
        except Exception as exc:  # a message that cannot be unpickled here
            logger.error("could not read a message from worker %s: %s", w.proc.pid, exc)
            msgs = [None]
        if msgs:
            self._on_messages(w, msgs)

    def _on_messages(self, w: _Worker, msgs: List[Any]) -> None:
        """Book the outcomes, hand out the next jobs (one write per worker), then report."""
        done: List[Tuple["Job", Any]] = []
        with self._lock:
            if not w.ready and msgs and type(msgs[0]) is P.Ready:
                w.ready = True
                del msgs[0]
                if w.running is not None:
                    self._started(w, w.running, report=False)
                if not msgs:
                    return
            for msg in msgs:
                if msg is None:
                    job = w.running
                    if job is not None:
                        del w.inflight[job.id]
                else:
                    job = w.inflight.pop(msg.job_id, None)
                if job is not None:
                    done.append((job, msg))
                elif type(msg) is P.JobDone:
                    transfer.discard(msg.paths)  # a cancelled job's result
            nxt = w.running
            if nxt is not None:
                self._started(w, nxt)
            else:
                w.deadline = None
            self._learn(done)
            self._pump()
        for job, msg in done:
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

    def _finish(self, job: "Job", msg: Any) -> None:
        self._cleanup(job)
        if msg is None:
            job.report_error(HitherError(f"the result of {job.function_name} could not be read"))
            return
        ri = msg.runtime_info
        if type(msg) is P.JobDone:
            try:
                value = transfer.loads(msg.payload, msg.paths, unlink=True)
            except Exception as exc:
                transfer.discard(msg.paths)
                job.report_error(HitherError(f"the result of {job.function_name} could not be "
                                             f"unpickled here: {type(exc).__name__}: {exc}"), ri)
                return
            job.report_result(value, ri)  # the worker checked it (hither.values.grammar.scan)
            return
        where = f"worker pid {ri['pid'] if ri else '?'}"
        job.report_error(rebuild_error(msg.error_info, msg.pickled_error, where), ri)

    def _on_worker_died(self, w: _Worker) -> None:
        try:
            code = w.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        with self._lock:
            if self._workers[w.index] is not w:  # already retired (cancel, timeout, shutdown)
                return
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
        expired: List[Tuple["Job", float, bool, int]] = []
        retired = False
        with self._lock:
            for w in list(self._workers):
                if w is None:
                    continue
                started = w.ready
                if started and (w.deadline is None or now < w.deadline):
                    continue
                if not started and now < w.start_deadline:
                    continue
                job = w.running
                if job is None and started:
                    continue
                self._retire(w, requeue=True)
                retired = True
                if job is None:  # an idle worker that never started: a new one starts on demand
                    logger.warning("ParallelJobHandler worker pid %s did not start within %g s "
                                   "(%s); killed it", w.proc.pid, self._start_grace, GRACE_ENV)
                    continue
                expired.append((job, job.config.job_timeout or 0.0, started, w.proc.pid))
            if retired:
                self._pump()
        for job, timeout, started, pid in expired:
            self._cleanup(job)
            if not started:
                job.report_error(WorkerDiedError(
                    f"the worker process (pid {pid}) for {job.function_name} ({job.id}) did not start "
                    f"within {self._start_grace:g} s (a hanging import, sitecustomize or file "
                    f"system? {GRACE_ENV} sets the limit); the handler replaced it"))
                continue
            job.report_error(JobTimeoutError(
                f"job {job.function_name} ({job.id}) was killed after running longer than "
                f"job_timeout={timeout} s; raise hi.Config(job_timeout=...) if it needs longer"))
