"""The job manager: creates jobs, waits for their input jobs, asks the cache, hands ready
jobs to their handler, records results, and wakes dependent jobs."""
from __future__ import annotations

import inspect
import logging
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from hither import config_state as _config
from hither.errors import DependencyFailedError, HitherError
from hither.plugins.interfaces import JobHandler
from hither.jobs import states as S
from hither.jobs.job import Job
from hither.jobs.placement import check_placement
from hither.jobs.timer import Timer
from hither.retry import DEFAULT as _DEFAULT_RETRY
from hither.values.refs import is_stored
from hither.status import JobStatus
from hither.values.grammar import scan, snapshot, substitute

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import JobFunction

logger = logging.getLogger("hither.jobs.manager")


class _Binding:
    """What ``bind_arguments`` needs of a function's signature, worked out once per function."""

    __slots__ = ("order", "names", "required", "defaults", "simple")

    def __init__(self, signature: inspect.Signature) -> None:
        params = signature.parameters
        plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self.order: Tuple[str, ...] = tuple(params)
        self.names = frozenset(n for n, p in params.items() if p.kind in plain)
        self.required = frozenset(n for n in self.names if params[n].default is inspect.Parameter.empty)
        #: parameters with a default, in order (a hither-value default joins the arguments)
        self.defaults: Tuple[Tuple[str, Any], ...] = tuple(
            (n, p.default) for n, p in params.items()
            if p.default is not p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        #: every parameter can be given by keyword and there is no ``**kwargs``: a call by
        #: keywords only binds without ``Signature.bind``
        self.simple = len(self.names) == len(params)


def _binding(fn: "JobFunction") -> _Binding:
    b = getattr(fn, "_hither_binding", None)
    if b is None:
        b = _Binding(fn.signature)
        try:
            fn._hither_binding = b  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - a function object that takes no attributes
            pass
    return b


def _bind_slow(fn: "JobFunction", args: tuple, kwargs: dict) -> Dict[str, Any]:
    """The arguments by name through ``Signature.bind`` (positional arguments, ``**kwargs``,
    and the errors naming what is wrong)."""
    try:
        bound = fn.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{fn.name}.run(): {exc}") from None
    given: Dict[str, Any] = {}
    for pname, value in bound.arguments.items():
        kind = fn.signature.parameters[pname].kind
        if kind is kind.VAR_KEYWORD:
            given.update(value)  # jobs pass arguments by name: flatten **kwargs
        elif kind in (kind.VAR_POSITIONAL, kind.POSITIONAL_ONLY):
            raise TypeError(f"{fn.name}.run(): hither passes arguments by name, so "
                            f"*{pname} / positional-only parameters are not supported; "
                            "make it a keyword parameter")
        else:
            given[pname] = value
    return given


def bind_arguments(fn: "JobFunction", args: tuple, kwargs: dict) -> Tuple[Dict[str, Any], List[Job]]:
    """The job's arguments by name (defaults included when they are hither values, so
    ``f.run(x=1)`` and ``f.run(x=1, d=None)`` share a hash) and its distinct input jobs.
    Raises ``TypeError`` naming the argument for anything hither cannot carry.

    The arguments are captured here, at ``.run()``: containers are copied, and so are
    writeable arrays up to ``hither.values.grammar.SNAPSHOT_MAX_BYTES`` (see ``values.snapshot``),
    so a job that starts later (after its input jobs, or when a worker frees up) sees the
    values as they were at ``.run()``."""
    b = _binding(fn)
    if not args and b.simple and kwargs.keys() <= b.names and kwargs.keys() >= b.required:
        # the common call, f.run(x=..., y=...): what Signature.bind would give, in its order
        given = {n: kwargs[n] for n in b.order if n in kwargs}
    else:
        given = _bind_slow(fn, args, kwargs)
    deps: List[Job] = []
    for name, value in given.items():
        deps.extend(scan(value, name))
    given = {name: snapshot(value) for name, value in given.items()}
    for pname, default in b.defaults:
        if pname not in given:
            try:
                scan(default, pname, allow_jobs=False)
            except TypeError:
                continue  # not a hither value: part of the code, covered by the version
            given[pname] = snapshot(default)
    return given, list({id(d): d for d in deps}.values()) if deps else deps


def _retry_policy(fn: "JobFunction", cfg: _config.ConfigState) -> Any:
    """The ``hi.Retry`` of a job of ``fn``: its function's, else the configuration's, else
    the default (infrastructure failures, 3 attempts)."""
    return getattr(fn, "retry", None) or cfg.retry or _DEFAULT_RETRY


_CAUSE_MAX = 2000  # characters of the root cause's message quoted in a DependencyFailedError


def _dependency_failed(job: Job, dep: Job) -> DependencyFailedError:
    """The error of ``job`` whose input ``dep`` failed or was cancelled. It names the input
    and the root cause once (the first job that failed in the chain, shared, not nested), so
    a failure at the head of a long chain costs the same small message at every link."""
    cause = dep.get_error()
    root = getattr(cause, "root_cause", None) if isinstance(cause, DependencyFailedError) else None
    if root is None:
        root = f"job {dep.function_name} ({dep.id}) {dep.get_status().value}"
        if cause is not None:
            text = str(cause)
            if len(text) > _CAUSE_MAX:
                text = text[:_CAUSE_MAX] + f"... ({len(text) - _CAUSE_MAX} more characters)"
            root += f": {type(cause).__name__}: {text}"
        msg = f"job {job.function_name} ({job.id}) could not run: its input {root}"
    else:
        msg = (f"job {job.function_name} ({job.id}) could not run: its input job "
               f"{dep.function_name} ({dep.id}) could not run; root cause: {root}")
    err = DependencyFailedError(msg)
    err.root_cause = root  # type: ignore[attr-defined]
    return err


class JobManager:
    """Process-wide coordinator of jobs (one instance: ``hither.jobs.manager.manager``): the
    shell around the job state machine (``hither.jobs.states``). It feeds each job's
    events in (``handle``) and performs the actions that come out: wait for input jobs,
    ask the cache, submit to the handler, write the cache, wake waiters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: Dict[str, Job] = {}
        self._handlers: "weakref.WeakSet[JobHandler]" = weakref.WeakSet()
        self._last_handler: Callable[[], Optional[JobHandler]] = lambda: None  # last added
        self._default_handler: Optional[JobHandler] = None
        self._dispatch_q: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._dispatch_thread: Optional[threading.Thread] = None
        self._timer = Timer("hither-retry-timer")

    # ------------------------------------------------------------------ creation
    def default_handler(self) -> JobHandler:
        handler = self._default_handler
        if handler is not None:  # made once; no lock on the hot path
            return handler
        with self._lock:
            if self._default_handler is None:
                from hither.local.default import DefaultJobHandler

                self._default_handler = DefaultJobHandler()
            return self._default_handler

    def create_job(self, fn: "JobFunction", args: tuple, kwargs: dict) -> Job:
        given, deps = bind_arguments(fn, args, kwargs)
        cfg = _config.current()
        handler: JobHandler = cfg.job_handler or self.default_handler()
        job = Job(fn, given, cfg, handler, self._container_for(fn, cfg), deps, self)
        check_placement(job)
        with self._lock:
            self._active[job.id] = job
            if self._last_handler() is not handler:  # a WeakSet add costs ~1 us a job
                self._handlers.add(handler)
                self._last_handler = weakref.ref(handler)
        cached = cfg.job_cache is not None
        self.handle(job, S.Submitted(len(deps), cached and not cfg.force_run, cached,
                                     _retry_policy(fn, cfg)), inline=True)
        return job

    def _await_inputs(self, job: Job) -> None:
        """Continue ``job`` once every input job has ended: right here if they all already
        have, else on the dispatch thread (never in a handler's thread)."""
        pending = [len(job.dependencies)]
        plock = threading.Lock()
        creator = threading.get_ident()
        registering = [True]

        def input_done(_dep: Job) -> None:
            with plock:
                pending[0] -= 1
                last = pending[0] == 0
            if last:
                if registering[0] and threading.get_ident() == creator:
                    self._inputs_ended(job, inline=True)
                else:
                    self._dispatch(job)

        for d in job.dependencies:
            d.add_done_callback(input_done)
        registering[0] = False

    def _container_for(self, fn: "JobFunction", cfg: _config.ConfigState) -> Optional[str]:
        """The image ``fn`` runs in under ``cfg``, or None for the host. Whether it can run
        there is the handler's to say (``hither.jobs.placement``)."""
        if isinstance(cfg.container, str):
            return cfg.container
        if cfg.container is True:
            return fn.container
        return None

    # ------------------------------------------------------------------ readiness
    def _dispatch(self, job: Job) -> None:
        """Continue ``job`` on the dispatch thread (never block a handler's own thread)."""
        with self._lock:
            if self._dispatch_thread is None or not self._dispatch_thread.is_alive():
                self._dispatch_thread = threading.Thread(target=self._dispatch_loop,
                                                         name="hither-dispatch", daemon=True)
                self._dispatch_thread.start()
        self._dispatch_q.put(job)

    def _dispatch_loop(self) -> None:
        while True:
            job = self._dispatch_q.get()
            if job is None:
                return
            try:
                self._inputs_ended(job, inline=False)
            except Exception:  # never let one job take the dispatcher down
                logger.exception("hither internal error while starting %s", job)

    def _inputs_ended(self, job: Job, inline: bool) -> None:
        for d in job.dependencies:
            if d.get_status() != JobStatus.FINISHED:
                self.handle(job, S.InputFailed(_dependency_failed(job, d)), inline)
                return
        self.handle(job, S.InputsReady(), inline)

    # ------------------------------------------------------------------ the shell
    def handle(self, job: Job, event: "S.Event", inline: bool = False) -> bool:
        """Feed ``event`` to ``job``'s state machine and perform the actions it returns
        (each may feed a follow-up event: the cache's answer, the write done, a failure);
        False when the event did not apply (e.g. a result after a cancel)."""
        applied, state, actions = job.apply(event)
        if not applied:
            logger.debug("%s: %s ignored in step %s", job, type(event).__name__, state.step.value)
            return False
        for action in actions:
            follow = self._perform(job, action, event, inline)
            if follow is not None:
                # the follow-up decides what comes next: it is the last action's answer
                # (cache, write, submit), or a failure that ends the job
                self.handle(job, follow, inline)
                break
        return True

    def _perform(self, job: Job, action: "S.Action", event: "S.Event", inline: bool
                 ) -> "Optional[S.Event]":
        """Do one action; returns the event it leads to, if any."""
        A = S.Action
        if action is A.MERGE_INFO:
            job.merge_runtime_info(getattr(event, "runtime_info", None))
        elif action is A.SUBMIT:
            try:
                job.handler.submit(job, inline)
            except Exception as exc:
                return S.Failed(exc)
        elif action is A.NOTIFY:
            with self._lock:
                self._active.pop(job.id, None)
            job.notify()
        elif action is A.RELEASE_INPUTS:
            job.release_inputs()
        elif action is A.ASK_CACHE:
            return self._ask_cache(job)
        elif action is A.WRITE_CACHE:
            self._write_cache(job)
            return S.Stored()
        elif action is A.WATCH_INPUTS:
            self._await_inputs(job)
        elif action is A.RESOLVE_INPUTS:
            try:  # e.g. an input's result kept in a store that cannot be read now
                job.resolved_kwargs = substitute(job.kwargs, lambda d: d.result_for(job))
            except Exception as exc:
                return S.Failed(exc)
        elif action is A.RETRY_LATER:
            self._retry_later(job, event)
        elif action is A.CANCEL_IN_HANDLER:
            raise AssertionError("cancel_in_handler is performed by JobManager.cancel")
        return None

    def _retry_later(self, job: Job, event: "S.Event") -> None:
        """Record the failed attempt of ``job`` and hand it back to its handler once its
        backoff delay has passed (one timer for all jobs; a cancel meanwhile wins)."""
        state = job.state
        error = getattr(event, "error", None)
        job.record_retry(error, state.attempt, state.delay)
        logger.warning("%s failed (attempt %d of %d, %s: %s); retrying in %.1f s", job,
                       state.attempt - 1, state.retry.attempts, type(error).__name__, error, state.delay)
        self._timer.call_later(state.delay, lambda: self.handle(job, S.RetryDue()))

    def _ask_cache(self, job: Job) -> "S.Event":
        """The cache's answer for ``job``: a hit, a miss, or the lookup's failure."""
        try:
            entry = job.config.job_cache.lookup(job)
            if entry is None:
                return S.CacheMiss()
            from hither.jobs.cache_policy import entry_error

            ri = {**entry.runtime_info.model_dump(), "cached": True}
            if entry.status == JobStatus.FINISHED:
                return S.CacheHit(JobStatus.FINISHED, entry.result, None, ri)
            return S.CacheHit(JobStatus.ERROR, None, entry_error(entry), ri)
        except Exception as exc:
            return S.Failed(exc)

    def _write_cache(self, job: Job) -> None:
        """Store the outcome of an ended ``job`` in its cache (which keeps what its policy
        says); a failure to write is logged, the job's outcome stands."""
        state = job.state
        try:
            # a cache keeps values, not references into a job's store
            value = state.value.materialize() if is_stored(state.value) else state.value
            job.config.job_cache.store(job, state.end_status, value, state.error,
                                       job.ended_runtime_info())
        except Exception as exc:
            logger.warning("could not store %s (%s) in the job cache: %s: %s",
                           job.function_name, job.id, type(exc).__name__, exc)

    # ------------------------------------------------------------------ control
    def cancel(self, job: Job) -> bool:
        """``job.cancel()``: end a job not yet with its handler; ask the handler to stop one
        that is; end a still-queued one the handler would not stop."""
        error = job.cancelled_error()
        event = S.CancelRequested(error)
        applied, _state, actions = job.apply(event)
        if S.Action.CANCEL_IN_HANDLER not in actions:
            for action in actions:
                self._perform(job, action, event, False)
            return applied
        if job.handler.cancel(job):
            return True
        return self.handle(job, S.HandlerKept(error))

    def active_jobs(self) -> List[Job]:
        with self._lock:
            return list(self._active.values())

    def wait_all(self, timeout: Optional[float] = None) -> None:
        """``hi.wait()``. Refused inside a job running in this process (DefaultJobHandler):
        it would wait for that job itself, and for the jobs queued behind it, for ever."""
        from hither.jobs.progress import ProgressLine, progress_stream, wait_with_progress
        from hither.local.execution import running_here
        import time

        inside = running_here.job
        if inside is not None:
            raise HitherError(
                f"hi.wait() was called inside the job {inside.function_name} ({inside.id}), "
                "which runs in this program's "
                "process (DefaultJobHandler): it would wait for that job itself, for ever. "
                "Inside a job, wait for the jobs it started with job.wait() (or pass them as "
                "arguments); call hi.wait() in the program, outside the jobs")
        deadline = None if timeout is None else time.monotonic() + timeout
        line = ProgressLine(progress_stream())
        try:
            while True:
                jobs = self.active_jobs()
                if not jobs:
                    return
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not wait_with_progress(jobs, remaining, line):
                    raise TimeoutError(f"hi.wait(): {len(self.active_jobs())} job(s) still unfinished "
                                       f"after {timeout} s; they keep running")
        finally:
            line.close()

    def reset(self) -> None:
        """Cancel every unfinished job and shut down every handler used so far."""
        for job in self.active_jobs():
            try:
                self.cancel(job)
            except Exception:
                logger.exception("could not cancel %s", job)
        with self._lock:
            handlers: Set[JobHandler] = set(self._handlers)
            self._handlers = weakref.WeakSet()
            self._last_handler = lambda: None
        for h in handlers:
            try:
                h.shutdown(wait=False)
            except Exception:
                logger.exception("could not shut down %s", h)
        for job in self.active_jobs():  # whatever a handler could not stop
            job.report_cancelled()


manager = JobManager()
