"""``hi.Job``: one run of a hither function with given arguments."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from hither.errors import JobNotFinishedError
from hither.status import JobStatus
from hither.values.grammar import job_hash

if TYPE_CHECKING:  # pragma: no cover
    from hither.config_state import ConfigState
    from hither.plugins.interfaces import JobHandler
    from hither.models import RuntimeInfo
    from hither.plugins.protocols import JobFunction

logger = logging.getLogger("hither.jobs.job")

_ids = itertools.count(1)
_id_prefix = os.urandom(4).hex()


class Job:
    """A running (or finished) hither function call. Create with ``f.run(**kwargs)``."""

    #: marks hither jobs for the value checks below them (which cannot import this module)
    _hither_job = True

    def __init__(self, function: "JobFunction", kwargs: Dict[str, Any], config: "ConfigState",
                 handler: "JobHandler", container: Optional[str], deps: List["Job"]) -> None:
        self.id = f"{_id_prefix}-{next(_ids)}"
        self.function = function
        self.kwargs = kwargs
        self.config = config
        self.handler = handler
        self.container = container  # image URL the job runs in, or None for the host
        self._deps: List["Job"] = deps  # held strongly only until this job ends
        self._dep_refs: List["weakref.ref[Job]"] = []
        self.resolved_kwargs: Optional[Dict[str, Any]] = None if deps else kwargs
        self._hash: Optional[str] = None
        self._status = JobStatus.PENDING
        self._result: Any = None
        self._error: Optional[BaseException] = None
        # a plain dict on the hot path; a RuntimeInfo model is built when asked for
        self._runtime_info: Dict[str, Any] = {"handler": getattr(handler, "name", "")}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._completing = False  # the first report wins
        self._callbacks: List[Callable[["Job"], None]] = []
        self._manager: Any = None  # the JobManager that routes this job's reports
        self.handler_data: Any = None  # private slot for the handler running the job

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
    def dependencies(self) -> List["Job"]:
        """The input jobs (Jobs in the arguments). Once this job has ended they are only
        weakly held, so a long pipeline does not keep every intermediate result alive."""
        if self._dep_refs:
            return [d for d in (r() for r in self._dep_refs) if d is not None]
        return list(self._deps)

    def _release_inputs(self) -> None:
        """At the end: keep the input values, let go of the input jobs."""
        if self._deps:
            self._dep_refs = [weakref.ref(d) for d in self._deps]
            self._deps = []
            if self.resolved_kwargs is not None:
                self.kwargs = self.resolved_kwargs

    # ------------------------------------------------------------------ user API
    def get_status(self) -> JobStatus:
        return self._status

    def is_done(self) -> bool:
        return self._done.is_set()

    def wait_done(self, timeout: Optional[float] = None) -> bool:
        """Block until the job has ended (no result, no raise); False if ``timeout`` ran out."""
        return self._done.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Wait for the job and return its result (or raise its error).

        ``timeout`` (seconds) raises the builtin ``TimeoutError`` when the wait ends first;
        the job keeps going.
        """
        if not self._done.is_set():
            from hither.jobs.progress import wait_with_progress

            if not wait_with_progress([self], timeout):
                raise TimeoutError(f"job {self.function.name} ({self.id}) did not finish within "
                                   f"{timeout} s (still {self._status.value}); it keeps running: "
                                   "wait again, or job.cancel() it")
        return self.get_result()

    def get_result(self) -> Any:
        """The result of a finished job; raises its error if it failed."""
        if not self._done.is_set():
            raise JobNotFinishedError(f"job {self.function.name} ({self.id}) is {self._status.value}, "
                                      "not finished; call job.wait() first")
        if self._error is not None:
            raise self._error
        result = self._result
        if getattr(type(result), "_hither_ref", False) is True:
            # a result that stayed in the store where the job ran: read it now, once
            result = result.materialize()
            self._result = result
        return result

    def result_for(self, consumer: "Job") -> Any:
        """This finished job's result as an input of ``consumer``: a result still held in
        a store stays a reference when ``consumer``'s handler reads that same store (the
        data then never passes through this process); otherwise the value itself."""
        result = self._result
        if getattr(type(result), "_hither_ref", False) is True and self._error is None:
            handler = consumer.handler
            store = getattr(handler, "result_store", None)
            if store is not None and (store is result.store or store == result.store):
                return result
        return self.get_result()

    def get_error(self) -> Optional[BaseException]:
        return self._error

    def cancel(self) -> bool:
        """Cancel a pending, queued or running job; ``wait()`` then raises
        ``hi.JobCancelledException``. False if the job had already ended."""
        return self._manager.cancel(self)

    def get_runtime_info(self) -> "RuntimeInfo":
        """Console output, start/end times, elapsed, host, pid, status (a ``hi.RuntimeInfo``)."""
        from hither.models import RuntimeInfo

        return RuntimeInfo(**{**self._runtime_info, "status": self._status})

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

    def __await__(self):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(_job: "Job") -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        self.add_done_callback(done)
        yield from fut.__await__()
        return self.get_result()

    def __repr__(self) -> str:
        return f"<hi.Job {self.function.name} {self.id} {self._status.value}>"

    # ------------------------------------------------------------------ state transitions
    # Only the job changes its own state; the manager calls these in order:
    # attach -> mark_queued -> (handler) mark_running -> begin_end -> end.
    def attach(self, manager: Any) -> None:
        """Route this job's reports to ``manager`` (done once, at creation)."""
        self._manager = manager

    def mark_queued(self) -> bool:
        """PENDING -> QUEUED before it goes to its handler; False if it already ended."""
        with self._lock:
            if self._done.is_set():
                return False
            self._status = JobStatus.QUEUED
            return True

    def mark_running(self, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._status = JobStatus.RUNNING
            if runtime_info is not None:
                self.update_runtime_info(runtime_info, JobStatus.RUNNING)

    def begin_end(self) -> bool:
        """Claim the right to end this job: True for the first report only."""
        with self._lock:
            if self._done.is_set() or self._completing:
                return False
            self._completing = True
            return True

    def update_runtime_info(self, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]",
                            status: JobStatus) -> None:
        ri = self._runtime_info
        if runtime_info is not None:
            if not isinstance(runtime_info, dict):
                runtime_info = runtime_info.model_dump(exclude_unset=True)
            ri.update({k: v for k, v in runtime_info.items() if v is not None and v != ""})
        ri["status"] = status

    @property
    def from_cache(self) -> bool:
        """Whether the outcome was taken from the job cache rather than a run."""
        return bool(self._runtime_info.get("cached"))

    def end(self, status: JobStatus, result: Any, error: Optional[BaseException]) -> List[Callable[["Job"], None]]:
        """Record the end (after ``begin_end``), wake waiters, let go of the input jobs;
        returns the done-callbacks for the caller to run."""
        with self._lock:
            self._result, self._error, self._status = result, error, status
            callbacks, self._callbacks = self._callbacks, []
            self._done.set()
        self._release_inputs()
        return callbacks

    # ------------------------------------------------------------------ for handlers
    def report_running(self, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        """The job has started; ``runtime_info`` (optional) says where (host, pid, a
        batch id, a log file...) and is merged into ``get_runtime_info()`` at once."""
        self._manager.on_running(self, runtime_info)

    def report_result(self, value: Any, runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        self._manager.complete(self, JobStatus.FINISHED, value, None, runtime_info)

    def report_error(self, error: BaseException,
                     runtime_info: "Optional[RuntimeInfo | Dict[str, Any]]" = None) -> None:
        self._manager.complete(self, JobStatus.ERROR, None, error, runtime_info)

    def report_cancelled(self) -> None:
        from hither.errors import JobCancelledException

        self._manager.complete(self, JobStatus.CANCELLED, None,
                               JobCancelledException(f"job {self.function.name} ({self.id}) was cancelled"),
                               None)

    def add_done_callback(self, cb: Callable[["Job"], None]) -> None:
        """Call ``cb(job)`` once the job ends (at once, here, if it already has)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(cb)
                return
        cb(self)
