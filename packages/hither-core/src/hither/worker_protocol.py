"""The messages between ``hi.ParallelJobHandler`` and its worker processes (``hither._worker``).

Each message is a small NamedTuple sent over a ``multiprocessing.connection.Connection``
(pickled). Stdlib-only, so a worker starts fast. The conversation::

    handler -> worker   Init(sys_path, owner_pid)          once, first
    handler -> worker   RunJob(...)                         a job (at most one prefetched)
    handler -> worker   CancelJob(job_id)                   skip a prefetched job
    handler -> worker   Stop()                              exit when idle
    worker  -> handler  JobDone(job_id, payload, paths, runtime_info)
    worker  -> handler  JobFailed(job_id, error_info, pickled_error, runtime_info)

Large array buffers travel out of band as files in shared memory (``hither.transfer``);
``paths`` name them.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple


class Init(NamedTuple):
    """First message to a new worker: the parent's import path and the pid that owns the
    worker (the worker dies when that process is gone)."""

    sys_path: List[str]
    owner_pid: int


class RunJob(NamedTuple):
    """Run ``function_ref`` (see ``handlers.parallel.function_ref``) on the pickled kwargs."""

    job_id: str
    function_ref: Tuple[Any, ...]
    payload: bytes
    paths: List[str]
    no_resolve_input_files: bool


class CancelJob(NamedTuple):
    """Skip the prefetched job ``job_id`` (a running job is cancelled by killing the worker)."""

    job_id: str


class Stop(NamedTuple):
    """Exit once the current job (if any) is done."""


class JobDone(NamedTuple):
    """A job's pickled result (``hither.transfer`` format) with its runtime info."""

    job_id: str
    payload: bytes
    paths: List[str]
    runtime_info: Dict[str, Any]


class JobFailed(NamedTuple):
    """A job's error: ``error_info`` holds the fields of ``hither.models.ErrorInfo``;
    ``pickled_error`` the exception itself when it pickles (else None)."""

    job_id: str
    error_info: Dict[str, Any]
    pickled_error: Optional[bytes]
    runtime_info: Optional[Dict[str, Any]]
