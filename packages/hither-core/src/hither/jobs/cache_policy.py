"""``hi.JobCache``: the policy in front of a cache backend (backends: hither-cache)."""
from __future__ import annotations

import builtins
import importlib
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Optional, Set, Tuple

from hither.code_identity import comparable
from hither.plugins import registry
from hither.__about__ import __version__
from hither.errors import ConfigError, HitherError, JobError
from hither.values.error_info import from_error_info, to_error_info
from hither.values.file import File
from hither.plugins.interfaces import CacheBackend
from hither.models import CacheEntry, Database, JobStatus, RuntimeInfo
from hither.values.grammar import map_files

if TYPE_CHECKING:  # pragma: no cover
    from hither.jobs.job import Job

logger = logging.getLogger("hither.jobs.cache_policy")


class JobCache:
    """Reuse results of jobs already run with the same name, version and arguments.

    Exactly one of: ``JobCache(path="folder")``, ``JobCache(use_tempdir=True)``,
    ``JobCache(database=hi.Database(mongo_url=..., database=...))`` or
    ``JobCache(backend=<CacheBackend>)``. Policy options:

    - ``cache_failing``: also record failed jobs; a later run raises the recorded error.
    - ``rerun_failing``: never reuse a recorded failure (rerun it instead).
    - ``force_run``: never reuse anything (results are still recorded).
    - ``check_code``: treat an entry made by different code (same version) as a miss; by
      default such a hit only warns, at the caller's line, that the version was not bumped.
      "Code" is the job's code identity (``hither.code_identity``: the function's code, the
      local modules it uses and, for a script's or notebook's function, the globals it
      reads), recorded in the entry's ``code_hash``. With ``check_code`` an entry is reused
      only when the identities match: an entry recorded without one (by an older hither)
      is a miss, and a warning (once per function) says why.

    Only outcomes of the function itself are recorded: a failure is never recorded (nor
    reused, if an older hither recorded it) when hither, not the function, ended the job:
    a timeout (``JobTimeoutError``), a cancel, a dead worker or lost process
    (``WorkerDiedError``), a failed input job, code that could not be loaded, or any other
    error hither raises on its own account (``HitherError``, apart from ``JobError``, which
    carries the function's own error), and ``KeyboardInterrupt`` and ``MemoryError``, which
    say more about the machine than about the function. Such a job runs again next time.
    """

    def __init__(self, path: Optional[str] = None, *, use_tempdir: bool = False,
                 database: Optional[Database] = None, backend: Optional[CacheBackend] = None,
                 cache_failing: bool = False, rerun_failing: bool = False, force_run: bool = False,
                 check_code: bool = False) -> None:
        chosen = [n for n, v in (("path", path), ("use_tempdir", use_tempdir or None),
                                 ("database", database), ("backend", backend)) if v is not None]
        if len(chosen) != 1:
            raise ConfigError("hi.JobCache needs exactly one of path=..., use_tempdir=True, "
                              "database=hi.Database(...) or backend=...; got "
                              + (", ".join(chosen) if chosen else "none"))
        if backend is not None:
            if not isinstance(backend, CacheBackend):
                raise ConfigError(f"hi.JobCache(backend=...) needs a CacheBackend, not {type(backend).__name__}")
            self.backend = backend
        elif database is not None:
            if not isinstance(database, Database):
                raise ConfigError("hi.JobCache(database=...) needs hi.Database(mongo_url=..., database=...)")
            self.backend = registry.load("caches", "mongo")(database=database)
        else:
            if use_tempdir:
                self._tempdir = tempfile.TemporaryDirectory(prefix="hither-jobcache-")
                path = self._tempdir.name
            self.backend = registry.load("caches", "file")(path=path)
        self.cache_failing = cache_failing
        self.rerun_failing = rerun_failing
        self.force_run = force_run
        self.check_code = check_code
        self._warned_no_code: Set[Tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"hi.JobCache({self.backend.describe()})"

    # -------------------------------------------------------------- used by the manager
    def lookup(self, job: "Job") -> Optional[CacheEntry]:
        """The usable entry for ``job``, or None (a miss)."""
        if self.force_run:
            return None
        try:
            entry = self.backend.get(job.job_hash)
        except Exception as exc:
            logger.warning("job cache %s could not be read for %s (%s: %s); running the job",
                           self.backend.describe(), job.function_name, type(exc).__name__, exc)
            return None
        if entry is None:
            return None
        if entry.status == JobStatus.ERROR and (self.rerun_failing or not self.cache_failing):
            return None
        if entry.status not in (JobStatus.FINISHED, JobStatus.ERROR):
            return None
        if entry.status == JobStatus.ERROR and entry.error is not None \
                and not _is_function_error(entry.error.type_module, entry.error.type_name):
            return None  # recorded by an older hither: not a result of the function
        if self.check_code:
            current = _code_hash(job)
            if not comparable(current, entry.code_hash):
                self._warn_no_code_hash(job, current is None)
                return None
            if current != entry.code_hash:
                logger.info("cache entry of %s made by other code: rerunning (check_code=True)",
                            job.function_name)
                return None
        elif entry.code_hash is not None:
            current = _code_hash(job)
            if comparable(current, entry.code_hash) and current != entry.code_hash:
                warn_at_user_line(
                    f"hither function {job.function_name} {job.function_version}: the cached result "
                    "was made by different code under the same version. Bump the version when the "
                    "code changes results (or use hi.JobCache(..., check_code=True)).")
        if entry.status == JobStatus.FINISHED and not _files_available(entry.result):
            logger.info("cached result of %s refers to files no longer available: rerunning",
                        job.function_name)
            return None
        return entry

    def _warn_no_code_hash(self, job: "Job", now: bool) -> None:
        key = (job.function_name, job.function_version)
        if key in self._warned_no_code:
            return
        self._warned_no_code.add(key)
        why = ("its code cannot be hashed now" if now else
               "the cached entry was recorded without a code identity (by an older hither?)")
        warn_at_user_line(f"hither function {job.function_name} {job.function_version}: "
                          f"hi.JobCache(check_code=True) cannot check the code: {why}; the cached "
                      "result is not reused and the job runs.")

    def store(self, job: "Job", status: JobStatus, result: Any, error: Optional[BaseException],
              runtime_info: RuntimeInfo) -> None:
        if status == JobStatus.ERROR and not self.cache_failing:
            return
        if status == JobStatus.ERROR and error is not None and not _is_function_error(error):
            return
        if status not in (JobStatus.FINISHED, JobStatus.ERROR):
            return
        entry = CacheEntry(
            job_hash=job.job_hash, function_name=job.function_name,
            function_version=job.function_version, status=status, result=result,
            error=to_error_info(error) if error is not None else None,
            runtime_info=runtime_info, code_hash=_code_hash(job), hither_version=__version__,
            created_at=time.time())
        self.backend.put(entry)


def entry_error(entry: CacheEntry) -> BaseException:
    """The exception recorded in a failed entry, rebuilt."""
    assert entry.error is not None
    return from_error_info(entry.error, where="an earlier run (from the job cache)")


#: errors of the machine, not of the function
_NOT_RESULTS = (KeyboardInterrupt, MemoryError)


def _is_function_error(error: Any, type_name: Optional[str] = None) -> bool:
    """Whether a failure is an outcome of the function (worth recording): given the
    exception, or the module and name of its type as an entry records them."""
    if type_name is not None:
        cls = _error_class(str(error), type_name)
        return cls is None or _is_function_error_type(cls)
    if isinstance(error, JobError):  # the function's error, its type not rebuilt here
        module, _, name = error.remote_type.rpartition(".")
        cls = _error_class(module, name) if module else None
        return cls is None or _is_function_error_type(cls)
    return _is_function_error_type(type(error))


def _is_function_error_type(cls: type) -> bool:
    if issubclass(cls, JobError):
        return True
    return not issubclass(cls, (HitherError,) + _NOT_RESULTS)


def _error_class(module: str, name: str) -> Optional[type]:
    """The exception class ``module``.``name`` when importable here, else None."""
    try:
        obj: Any = builtins if module == "builtins" else importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - not importable: not one of hither's own
        return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _code_hash(job: "Job") -> Optional[str]:
    """The job's code identity (``hither.code_identity``); None where it cannot be made
    (caching goes on: the "different code" check is skipped, with check_code=True a miss).
    A job seen only as its spec (a compute resource's cache) gives the spec's code hash."""
    try:
        ident = getattr(job, "code_identity", None)
        return str(ident) if ident is not None else job.function.code_bundle().code_hash
    except Exception as exc:  # noqa: BLE001
        logger.info("no code identity for %s (%s: %s); its cache entries skip the code check",
                    job.function_name, type(exc).__name__, exc)
        return None


#: the folder of the hither package (this file is hither/jobs/cache_policy.py)
_HITHER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_at_user_line(message: str) -> None:
    """``warnings.warn`` attributed to the innermost frame outside hither (the user's
    ``.run()`` or ``.wait()``), as ``skip_file_prefixes`` does on Python >= 3.12."""
    inside = _HITHER_DIR
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(inside)
                                 or frame.f_code.co_filename == threading.__file__):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:  # a handler's own thread: no user frame to point at
        warnings.warn(message, UserWarning, stacklevel=2)
        return
    g = frame.f_globals
    # no module_globals: for a script read from stdin its loader cannot give the source
    warnings.warn_explicit(message, UserWarning, frame.f_code.co_filename, frame.f_lineno,
                           module=g.get("__name__"),
                           registry=g.setdefault("__warningregistry__", {}))


def _files_available(result: Any) -> bool:
    ok = True

    def check(f: File) -> File:
        nonlocal ok
        if ok:
            try:
                f.resolve()
            except Exception:
                ok = False
        return f

    map_files(result, check)
    return ok
