"""``hi.DefaultJobHandler``: runs each job in this process, one at a time."""
from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Optional

from hither.local.execution import call_captured, running_here
from hither.plugins.interfaces import JobHandler, Launcher
from hither.values.outcome import report

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

logger = logging.getLogger("hither.local.default")


class DefaultJobHandler(JobHandler):
    """Runs jobs in the calling process.

    A job whose inputs are ready runs at once, inside ``.run()``, in the caller's thread
    (lowest overhead; no process boundary). A job that becomes ready later (its input jobs
    ran elsewhere) runs on this handler's own thread. A job with a container runs there
    through a container runner (``hither.outside.path``), which stops it at ``job_timeout`` and on
    cancel. It cannot stop a running in-process job, so it refuses ``job_timeout`` for
    in-process jobs and cannot cancel one once started.
    """

    name = "default"

    def __init__(self) -> None:
        self._q: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(self, job: "Job", inline: bool) -> None:
        if inline:
            self._execute(job)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hither-default", daemon=True)
                self._thread.start()
        self._q.put(job)

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            self._execute(job)

    def _execute(self, job: "Job") -> None:
        if job.is_done():  # cancelled while queued
            return
        job.report_running()
        if job.container is not None:
            from hither.outside.path import container_launcher, run_outside

            run_outside(job, container_launcher(job))
            return
        outer, running_here.job = running_here.job, job
        try:
            outcome = call_captured(job.function.raw, job.resolved_kwargs or {},
                                    self.name, job.function.no_resolve_input_files)
        except BaseException as exc:  # KeyboardInterrupt: end the job, then let it propagate
            job.report_error(exc)
            raise
        finally:
            running_here.job = outer
        report(job, outcome)

    def cancel(self, job: "Job") -> bool:
        # queued jobs are skipped by _execute once reported cancelled; a running container
        # job is stopped; an in-process one goes on (nothing can stop it safely)
        if job.container is not None and job.get_status().value == "running":
            from hither.outside.path import cancel_outside

            return cancel_outside(job)
        if job.get_status().value == "queued":
            job.report_cancelled()
            return True
        return False

    def job_dir_launcher(self) -> Optional[Launcher]:
        """One job directory at a time in a warm job server (a job process is reused for
        the next job of the same code bundle)."""
        from hither.outside.jobserver import JobServerLauncher

        return JobServerLauncher(capacity=1, reuse=True)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._q.put(None)
            self._thread = None
            self._q = queue.SimpleQueue()
