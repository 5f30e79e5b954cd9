"""``hi.DefaultJobHandler``: runs each job in this process, one at a time."""
from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Optional

from ..errors import ConfigError
from ..execution import call_captured
from ..interfaces import JobHandler

if TYPE_CHECKING:  # pragma: no cover
    from ..job import Job

logger = logging.getLogger("hither.handlers.default")


class DefaultJobHandler(JobHandler):
    """Runs jobs in the calling process.

    A job whose inputs are ready runs at once, inside ``.run()``, in the caller's thread
    (lowest overhead; no process boundary). A job that becomes ready later (its input jobs
    ran elsewhere) runs on this handler's own thread. A job with a container runs there
    through the container runner. It cannot stop a running in-process job, so it refuses
    ``job_timeout`` and cannot cancel a job once started.
    """

    name = "default"

    def __init__(self) -> None:
        self._q: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def check_config(self, job: "Job") -> None:
        if job.config.job_timeout is not None and job.container is None:
            raise ConfigError(
                f"hi.Config(job_timeout={job.config.job_timeout}) cannot be enforced by the "
                f"DefaultJobHandler, which runs {job.function_name} inside this process; use "
                "hi.ParallelJobHandler(num_workers=1) (or another handler that runs jobs in "
                "their own process) to have jobs stopped at the timeout")

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
            from ..jobdir import run_in_container

            run_in_container(job)
            return
        try:
            status, result, error, ri = call_captured(job.function.raw, job.resolved_kwargs or {},
                                                      self.name, job.function.no_resolve_input_files)
        except BaseException as exc:  # KeyboardInterrupt: end the job, then let it propagate
            job.report_error(exc)
            raise
        if error is None:
            job.report_result(result, ri)
        else:
            job.report_error(error, ri)

    def cancel(self, job: "Job") -> bool:
        # queued jobs are skipped by _execute once reported cancelled; running ones go on
        if job.get_status().value == "queued":
            job.report_cancelled()
            return True
        return False

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._q.put(None)
            self._thread = None
            self._q = queue.SimpleQueue()
