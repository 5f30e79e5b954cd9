"""``hi.Config``: nested configuration contexts, safe across threads and asyncio tasks.

Options not given to a ``hi.Config`` inherit from the enclosing one. The state lives in a
``contextvars.ContextVar``: a new thread starts from the defaults, an asyncio task from
the context it was created in.
"""
from __future__ import annotations

import contextvars
import math
import dataclasses
from typing import Any, List

from hither.config_state import _DEFAULT, ConfigState, _current, current
from hither.errors import ConfigError

__all__ = ["Config", "ConfigState", "current", "_DEFAULT"]

_UNSET: Any = object()


def _container_options(value: Any) -> Any:
    from pydantic import ValidationError

    from hither.models import ContainerOptions

    if isinstance(value, ContainerOptions):
        return value
    if not isinstance(value, dict):
        raise ConfigError("hi.Config(container_options=...) takes hi.ContainerOptions(...) or a dict "
                          f"of its fields, not {type(value).__name__}")
    try:
        return ContainerOptions(**value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"hi.Config(container_options=...) is invalid: {problems}") from None


class Config:
    """Set job options for the code in a ``with`` block::

        with hi.Config(job_handler=hi.ParallelJobHandler(4), job_cache=hi.JobCache(path="jc")):
            job = f.run(x=1)
            with hi.Config(force_run=True):   # inherits handler and cache, reruns anyway
                job2 = f.run(x=1)

    ``job_handler``: where jobs run. ``container``: True runs functions in the container
    they declare with ``@hi.container`` (a string runs every job in that image; False or
    None runs on the host). ``job_cache``: a ``hi.JobCache``. ``download_results``: bring
    results of remote jobs back even when the next step could read them remotely.
    ``job_timeout``: seconds after which a running job is killed (``hi.JobTimeoutError``);
    None or ``float('inf')`` means no limit.
    ``force_run``: run even when the cache has the result (the new result is stored).
    ``container_engine``: which container runner runs container jobs (``"docker"``,
    ``"apptainer"``, ``"singularity"``; default: the first available of those that can run
    the image). ``container_options``: ``hi.ContainerOptions`` or a dict of its fields (env,
    binds, gpus, network, user, memory, reuse). ``retry``: a ``hi.Retry`` (or a number of
    attempts, or False for none) for jobs whose function does not give its own; by default
    failures that are not the job's fault are retried twice (see ``hi.Retry``).
    """

    def __init__(self, job_handler: Any = _UNSET, container: Any = _UNSET, job_cache: Any = _UNSET,
                 download_results: Any = _UNSET, job_timeout: Any = _UNSET, force_run: Any = _UNSET,
                 container_engine: Any = _UNSET, container_options: Any = _UNSET,
                 retry: Any = _UNSET) -> None:
        from hither.plugins.interfaces import JobHandler
        from hither.jobs.cache_policy import JobCache

        if job_handler is not _UNSET and job_handler is not None and not isinstance(job_handler, JobHandler):
            raise ConfigError(f"hi.Config(job_handler=...) needs a job handler such as "
                              f"hi.ParallelJobHandler(4), not {type(job_handler).__name__}")
        if container is not _UNSET and not isinstance(container, (bool, str, type(None))):
            raise ConfigError("hi.Config(container=...) takes True, False, None or an image URL "
                              f"like 'docker://python:3.11', not {type(container).__name__}")
        if job_cache is not _UNSET and job_cache is not None and not isinstance(job_cache, JobCache):
            raise ConfigError("hi.Config(job_cache=...) needs a hi.JobCache(...), not "
                              f"{type(job_cache).__name__}")
        if job_timeout is not _UNSET and job_timeout is not None:
            if isinstance(job_timeout, bool) or not isinstance(job_timeout, (int, float)) \
                    or math.isnan(job_timeout) or job_timeout <= 0:
                raise ConfigError(f"hi.Config(job_timeout=...) must be a positive number of "
                                  f"seconds, or None (or float('inf')) for no limit, not {job_timeout!r}")
            if math.isinf(job_timeout):
                job_timeout = None  # no limit, as None says
        for opt, val in (("force_run", force_run), ("download_results", download_results)):
            if val is not _UNSET and val is not None and not isinstance(val, bool):
                raise ConfigError(f"hi.Config({opt}=...) must be True or False, not {val!r}")
        if container_engine is not _UNSET and container_engine is not None and \
                (not isinstance(container_engine, str) or not container_engine):
            raise ConfigError("hi.Config(container_engine=...) takes a container runner name such as "
                              f"'docker' or 'apptainer', or None, not {container_engine!r}")
        if container_options is not _UNSET and container_options is not None:
            container_options = _container_options(container_options)
        if retry is not _UNSET and retry is not None:
            from hither.retry import as_policy

            retry = as_policy(retry, "hi.Config")
        self._given = {k: v for k, v in dict(job_handler=job_handler, container=container,
                                             job_cache=job_cache, download_results=download_results,
                                             job_timeout=job_timeout, force_run=force_run,
                                             container_engine=container_engine,
                                             container_options=container_options,
                                             retry=retry).items()
                       if v is not _UNSET}
        if "force_run" in self._given and self._given["force_run"] is None:
            self._given["force_run"] = False
        self._tokens: List[contextvars.Token] = []

    def __enter__(self) -> "Config":
        state = dataclasses.replace(_current.get(), **self._given)
        self._tokens.append(_current.set(state))
        return self

    def __exit__(self, *exc: Any) -> None:
        _current.reset(self._tokens.pop())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._given.items())
        return f"hi.Config({inner})"
