"""Checks at ``.run()`` that a job can run where its handler will put it (``hither.jobs.placement``).

A handler declares what it can do with class attributes (``JobHandler.supports_timeout``,
``containers_run_here``, ``needs_code_bundle``); these checks apply them for every handler
before anything is queued, then ask the handler's own ``check_config``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hither.plugins.containers import runner_class_for
from hither.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from hither.jobs.job import Job


def check_placement(job: "Job") -> None:
    """Raise (``ConfigError``, or a packaging error) if ``job`` cannot run as configured."""
    handler = job.handler
    timeout = job.config.job_timeout
    if timeout is not None and not handler.supports_timeout and job.container is None:
        raise ConfigError(f"hi.Config(job_timeout={timeout}) cannot be enforced by "
                          f"{type(handler).__name__}, which runs {job.function_name} inside this "
                          "process; use hi.ParallelJobHandler(num_workers=1) (or another handler "
                          "that runs jobs in their own process) to have jobs stopped at the timeout")
    if job.container is not None and handler.containers_run_here:
        runner_class_for(job.container, job.config, job.function_name)
    if job.container is not None or handler.needs_code_bundle:
        # nested, interactive and over-limit functions are refused now, not in a worker
        job.function.code_bundle()
    handler.check_config(job)
