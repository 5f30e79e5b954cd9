"""hither: run pure Python functions as cached, parallel, containerized jobs.

    import hither as hi

    @hi.function('add', '0.1.0')
    def add(x, y):
        return x + y

    assert add.run(x=1, y=2).wait() == 3

Names provided by other hither packages (``SlurmJobHandler``, ``RemoteJobHandler``,
``ComputeResource``, or any name a package declares in the ``hither.exports`` entry-point
group) are loaded on first use; a known name whose package is missing raises an error that
says what to install.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

from hither import errors
from hither.__about__ import __version__
from hither.config import Config
from hither.errors import (DependencyFailedError, HitherError, JobCancelledException, JobError,
                     JobTimeoutError, WorkerDiedError)
from hither.values.file import File
from hither.function import HitherFunction, additional_files, container, function, local_modules, opts, run
from hither.status import JobStatus
from hither.tempdir import TemporaryDirectory

# Loaded on first use, so that ``import hither`` stays light (worker processes and code
# that only declares functions pay neither for numpy nor for pydantic).
_LAZY = {
    "Job": ("hither.jobs.job", "Job"),
    "JobCache": ("hither.jobs.cache_policy", "JobCache"),
    "Database": ("hither.models", "Database"),
    "RuntimeInfo": ("hither.models", "RuntimeInfo"),
    "ContainerOptions": ("hither.models", "ContainerOptions"),
    "Retry": ("hither.retry", "Retry"),
    "JobExitError": ("hither.runtime", "JobExitError"),
    "DefaultJobHandler": ("hither.local.default", "DefaultJobHandler"),
    "ParallelJobHandler": ("hither.local.parallel", "ParallelJobHandler"),
    "JobHandler": ("hither.plugins.interfaces", "JobHandler"),
    "CacheBackend": ("hither.plugins.interfaces", "CacheBackend"),
    "Store": ("hither.plugins.interfaces", "Store"),
    "ContainerRunner": ("hither.plugins.interfaces", "ContainerRunner"),
}


def wait(timeout: Optional[float] = None) -> None:
    """Wait until every job started so far has ended (failed jobs do not raise here: their
    ``wait()``/``get_result()`` does). ``TimeoutError`` if ``timeout`` seconds pass first."""
    from hither.jobs.manager import manager

    manager.wait_all(timeout)


def reset() -> None:
    """Cancel every unfinished job and shut down every job handler used so far."""
    from hither.jobs.manager import manager

    manager.reset()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if not name.startswith("_") and name != "registry":
        # names other hither packages add (``hi.SlurmJobHandler``...): any package can
        # declare one in the ``hither.exports`` entry-point group
        registry = importlib.import_module("hither.plugins.registry")
        if name in registry.names("exports") or ("exports", name) in registry.KNOWN_PROVIDERS:
            return registry.load("exports", name)
    raise AttributeError(f"module 'hither' has no attribute {name!r}")


__all__ = [
    "__version__", "errors", "Config", "File", "function", "container", "additional_files",
    "local_modules", "opts", "run", "wait", "reset", "Job", "JobStatus", "RuntimeInfo",
    "JobCache", "Database", "DefaultJobHandler", "ParallelJobHandler", "TemporaryDirectory",
    "JobCancelledException", "JobTimeoutError", "JobError", "WorkerDiedError",
    "DependencyFailedError", "HitherError", "HitherFunction", "JobHandler", "CacheBackend",
    "Store", "ContainerRunner", "ContainerOptions", "JobExitError", "Retry",
]  # SlurmJobHandler, RemoteJobHandler, ComputeResource resolve on access (their packages)
