"""``hi.Config``: nested configuration contexts, safe across threads and asyncio tasks.

Options not given to a ``hi.Config`` inherit from the enclosing one. The state lives in a
``contextvars.ContextVar``: a new thread starts from the defaults, an asyncio task from
the context it was created in.
"""
from __future__ import annotations

import contextvars
import math
import dataclasses
from typing import TYPE_CHECKING, Any, List, Optional, Union

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .interfaces import JobHandler
    from .job_cache import JobCache

_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class ConfigState:
    """The options in force; a snapshot is attached to every Job at ``.run()``."""

    job_handler: Optional["JobHandler"] = None  # None: the process-wide DefaultJobHandler
    container: Union[bool, str, None] = None  # True: the function's own container; str: this image
    job_cache: Optional["JobCache"] = None
    download_results: Optional[bool] = None
    job_timeout: Optional[float] = None
    force_run: bool = False


_DEFAULT = ConfigState()
_current: contextvars.ContextVar[ConfigState] = contextvars.ContextVar("hither_config", default=_DEFAULT)


def current() -> ConfigState:
    """The configuration in force here."""
    return _current.get()


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
    """

    def __init__(self, job_handler: Any = _UNSET, container: Any = _UNSET, job_cache: Any = _UNSET,
                 download_results: Any = _UNSET, job_timeout: Any = _UNSET, force_run: Any = _UNSET) -> None:
        from .interfaces import JobHandler
        from .job_cache import JobCache

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
        self._given = {k: v for k, v in dict(job_handler=job_handler, container=container,
                                             job_cache=job_cache, download_results=download_results,
                                             job_timeout=job_timeout, force_run=force_run).items()
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
