"""``hi.Job``: one run of a hither function with given arguments (the shell around its
state record: ``hither.jobs.states`` decides, the job manager performs)."""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Optional, Tuple

from hither.code_identity import function_identity
from hither.errors import JobCancelledException, JobNotFinishedError
from hither.events import recorder as _events
from hither.jobs import states as S
from hither.status import JobStatus
from hither.values.grammar import job_hash

try:  # Python >= 3.8
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]

if TYPE_CHECKING:  # pragma: no cover
    from hither.config_state import ConfigState
    from hither.plugins.interfaces import JobHandler
    from hither.models import RuntimeInfo
    from hither.plugins.protocols import JobFunction

logger = logging.getLogger("hither.jobs.job")

_ids = itertools.count(1)
_NOT_YET: Any = object()  # no materialised result yet


class Coordinator(Protocol):
    """What a job needs of the manager that created it (``hither.jobs.manager``): it
    feeds the job's events through the state machine and performs the actions."""

    def handle(self, job: "Job", event: "S.Event", inline: bool = False) -> bool: ...

    def cancel(self, job: "Job") -> bool: ...


class Job:
    """A running (or finished) hither function call. Create with ``f.run(**kwargs)``."""

    #: marks hither jobs for the value checks below them (which cannot import this module)
    _hither_job = True

    def __init__(self, function: "JobFunction", kwargs: Dict[str, Any], config: "ConfigState",
                 handler: "JobHandler", container: Optional[str], deps: List["Job"],
                 coordinator: Optional[Coordinator] = None) -> None:
        self.id = f"{_events.RUN_ID}-{next(_ids)}"  # unique across the programs of the event log
        self.function = function
        self.kwargs = kwargs
        self.config = config
        self.handler = handler
        self.container = container  # image URL the job runs in, or None for the host
        self._deps: List["Job"] = deps  # held strongly only until this job ends
        self._dep_refs: List["weakref.ref[Job]"] = []
        self.resolved_kwargs: Optional[Dict[str, Any]] = None if deps else kwargs
        self._hash: Optional[str] = None
        self._code_identity: Optional[str] = None
        self._state = S.JobState()  # changed only by _apply (the state machine), under _lock
        self._materialized: Any = _NOT_YET  # the result read from its store, once
        # a plain dict on the hot path; a RuntimeInfo model is built when asked for
        self._runtime_info: Dict[str, Any] = {"handler": getattr(handler, "name", "")}
        self._lock = threading.Lock()
        self._done_event: Optional[threading.Event] = None  # made only for a job waited on unfinished
        self._callbacks: List[Callable[["Job"], None]] = []
        self._coordinator = coordinator  # routes this job's reports (None: a job never run)
        #: the slot of the handler running the job (``hither.plugins.protocols.Job``)
        self.handler_data: object = None

    # ------------------------------------------------------------------ identity
    @property
    def function_name(self) -> str:
        return self.function.name

    @property
    def function_version(self) -> str:
        return self.function.version

    @property
    def job_hash(self) -> str:
        """sha1 of (name, version, arguments); after input jobs finish, over their results."""
        if self._hash is not None:
            return self._hash
        args = self.resolved_kwargs if self.resolved_kwargs is not None else self.kwargs
        h = job_hash(self.function.name, self.function.version, args)
        if self.resolved_kwargs is not None:
            self._hash = h
        return h

    @property
    def code_identity(self) -> str:
        """What this job runs (``hither.code_identity``), taken at its first use (the cache
        lookup or the handler's submit, at ``.run()`` for a job without input jobs)."""
        if self._code_identity is None:
            self._code_identity = function_identity(self.function)
        return self._code_identity

    @property
    def dependencies(self) -> List["Job"]:
        """The input jobs (Jobs in the arguments). Once this job has ended they are only
        weakly held, so a long pipeline does not keep every intermediate result alive."""
        if self._dep_refs:
            return [d for d in (r() for r in self._dep_refs) if d is not None]
        return list(self._deps)

    def release_inputs(self) -> None:
        """At the end: keep the input values, let go of the input jobs."""
        if self._deps:
            self._dep_refs = [weakref.ref(d) for d in self._deps]
            self._deps = []
            if self.resolved_kwargs is not None:
                self.kwargs = self.resolved_kwargs

    # ------------------------------------------------------------------ user API
    def get_status(self) -> JobStatus:
        return self._state.status

    def is_done(self) -> bool:
        return self._state.step is S.Step.DONE

    def wait_done(self, timeout: Optional[float] = None) -> bool:
        """Block until the job has ended (no result, no raise); False if ``timeout`` ran out."""
        if self._state.step is S.Step.DONE:
            return True
        with self._lock:
            if self._state.step is S.Step.DONE:
                return True
            if self._done_event is None:
                self._done_event = threading.Event()
            event = self._done_event
        return event.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Wait for the job and return its result (or raise its error).

        ``timeout`` (seconds) raises the builtin ``TimeoutError`` when the wait ends first;
        the job keeps going.
        """
        if self._state.step is not S.Step.DONE:
            from hither.jobs.progress import wait_with_progress

            if not wait_with_progress([self], timeout):
                why = self._runtime_info.get("pending_reason")
                raise TimeoutError(f"job {self.function.name} ({self.id}) did not finish within "
                                   f"{timeout} s (still {self._state.status.value}"
                                   + (f": {why}" if why and self._state.status.value == "queued" else "")
                                   + "); it keeps running: wait again, or job.cancel() it")
        return self.get_result()

    @property
    def _result(self) -> Any:
        """The outcome's value as recorded (a stored reference until ``get_result``)."""
        m = self._materialized
        return self._state.value if m is _NOT_YET else m

    def get_result(self) -> Any:
        """The result of a finished job; raises its error if it failed."""
        state = self._state
        if state.step is not S.Step.DONE:
            raise JobNotFinishedError(f"job {self.function.name} ({self.id}) is {state.status.value}, "
                                      "not finished; call job.wait() first")
        if state.error is not None:
            raise state.error
        result = self._result
        if getattr(type(result), "_hither_ref", False) is True:
            # a result that stayed in the store where the job ran: read it now, once
            result = result.materialize()
            self._materialized = result
        return result

    def result_for(self, consumer: "Job") -> Any:
        """This finished job's result as an input of ``consumer``: a result still held in
        a store stays a reference when ``consumer``'s handler reads that same store (the
        data then never passes through this process); otherwise the value itself."""
        result = self._result
        if getattr(type(result), "_hither_ref", False) is True and self._state.error is None:
            handler = consumer.handler
            store = getattr(handler, "result_store", None)
            if store is not None and (store is result.store or store == result.store):
                return result
        return self.get_result()

    def get_error(self) -> Optional[BaseException]:
        return self._state.error

    def cancel(self) -> bool:
        """Cancel a pending, queued or running job; ``wait()`` then raises
        ``hi.JobCancelledException``. False if the job had already ended."""
        if self._coordinator is None:
            return False
        return self._coordinator.cancel(self)

    def get_runtime_info(self) -> "RuntimeInfo":
        """Console output, start/end times, elapsed, host, pid, status (a ``hi.RuntimeInfo``)."""
        from hither.models import RuntimeInfo

        return RuntimeInfo(**{**self._runtime_info, "status": self._state.status})

    def print_console_out(self) -> None:
        """Write the job's captured stdout and stderr to this process's console."""
        import sys

        ri = self._runtime_info
        sys.stdout.write(f"--- console output of job {self.function.name} ({self.id}) ---\n")
        sys.stdout.write(ri.get("stdout", ""))
        if ri.get("stderr"):
            sys.stdout.write("--- stderr ---\n" + ri["stderr"])
        sys.stdout.write("--- end of console output ---\n")
        sys.stdout.flush()

    def __await__(self) -> Generator[Any, None, Any]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        def done(_job: "Job") -> None:
            loop.call_soon_threadsafe(wake)

        self.add_done_callback(done)
        yield from fut.__await__()
        return self.get_result()

    def __repr__(self) -> str:
        return f"<hi.Job {self.function.name} {self.id} {self._state.status.value}>"

    # ------------------------------------------------------------------ the shell
    @property
    def state(self) -> "S.JobState":
        """The job's state record (``hither.jobs.states``): step, status, outcome."""
        return self._state

    def apply(self, event: "S.Event") -> Tuple[bool, "S.JobState", Tuple["S.Action", ...]]:
        """Feed ``event`` to the state machine (under the job's lock); returns whether it
        applied, the new record, and the actions for the caller (the manager) to perform,
        in order."""
        with self._lock:
            old = self._state
            state, actions = S.transition(old, event)
            self._state = state
        if state is not old:  # recorded in the job event log (hither.events): a tuple queued
            put = _events.put
            if put is not None:
                put(self, event, old, state, self._runtime_info, self._deps)
        return state is not old or bool(actions), state, actions

    def merge_runtime_info(self, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]") -> None:
        """Merge what a handler or the cache says about the run into ``get_runtime_info()``."""
        if runtime_info is not None:
            if not isinstance(runtime_info, dict):
                runtime_info = runtime_info.model_dump(exclude_unset=True)
            values = runtime_info.values()
            if None in values or "" in values:  # unknowns do not hide what is known
                runtime_info = {k: v for k, v in runtime_info.items() if v is not None and v != ""}
            self._runtime_info.update(runtime_info)

    def record_retry(self, error: Optional[BaseException], attempt: int, delay: float) -> None:
        """A run failed and the job goes back to its handler for run ``attempt``: keep the
        failed run's error summary, forget where and how it ran."""
        ri = self._runtime_info
        summary = f"attempt {attempt - 1}: {type(error).__name__}: {error}"
        errors = list(ri.get("attempt_errors") or []) + [summary[:2000]]
        self._runtime_info = {"handler": ri.get("handler", ""), "attempts": attempt,
                              "attempt_errors": errors}
        logger.debug("%s: attempt %d in %.1f s", self, attempt, delay)

    def ended_runtime_info(self) -> "RuntimeInfo":
        """The runtime info with the status the job ends with (for the cache entry)."""
        from hither.models import RuntimeInfo

        state = self._state
        return RuntimeInfo(**{**self._runtime_info, "status": state.end_status or state.status})

    @property
    def from_cache(self) -> bool:
        """Whether the outcome was taken from the job cache rather than a run."""
        return self._state.from_cache

    def notify(self) -> None:
        """Wake the waiters and run the done-callbacks (after the job became DONE)."""
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
            event = self._done_event
        if event is not None:
            event.set()
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                logger.exception("error in a done-callback of %s", self)

    def add_done_callback(self, cb: Callable[["Job"], None]) -> None:
        """Call ``cb(job)`` once the job ends (at once, here, if it already has)."""
        with self._lock:
            if self._state.step is not S.Step.DONE:
                self._callbacks.append(cb)
                return
        cb(self)

    # ------------------------------------------------------------------ for handlers
    def _no_coordinator(self) -> RuntimeError:
        return RuntimeError(f"{self!r} was not started by a job manager: nothing to report to")

    def report_running(self, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        """The job has started; ``runtime_info`` (optional) says where (host, pid, a
        batch id, a log file...) and is merged into ``get_runtime_info()`` at once."""
        if self._coordinator is None:
            raise self._no_coordinator()
        self._coordinator.handle(self, S.Started(runtime_info))

    def report_result(self, value: Any, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        """The job returned ``value`` (the first end a job reports wins)."""
        if self._coordinator is None:
            raise self._no_coordinator()
        self._coordinator.handle(self, S.Finished(value, runtime_info))

    def report_error(self, error: BaseException,
                     runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        """The job failed with ``error`` (the first end a job reports wins)."""
        if self._coordinator is None:
            raise self._no_coordinator()
        self._coordinator.handle(self, S.Failed(error, runtime_info))

    def report_cancelled(self) -> None:
        """The job was stopped (the first end a job reports wins)."""
        if self._coordinator is None:
            raise self._no_coordinator()
        self._coordinator.handle(self, S.Cancelled(self.cancelled_error()))

    def cancelled_error(self) -> JobCancelledException:
        return JobCancelledException(f"job {self.function.name} ({self.id}) was cancelled")
