"""``hi.JobCache``: the policy in front of a cache backend (backends: hither-cache)."""
from __future__ import annotations

import logging
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Optional

from . import registry
from .__about__ import __version__
from .errors import ConfigError, HitherError
from .error_info import from_error_info, to_error_info
from .file import File
from .interfaces import CacheBackend
from .models import CacheEntry, Database, JobStatus, RuntimeInfo
from .values import map_files

if TYPE_CHECKING:  # pragma: no cover
    from .job import Job

logger = logging.getLogger("hither.job_cache")


class JobCache:
    """Reuse results of jobs already run with the same name, version and arguments.

    Exactly one of: ``JobCache(path="folder")``, ``JobCache(use_tempdir=True)``,
    ``JobCache(database=hi.Database(mongo_url=..., database=...))`` or
    ``JobCache(backend=<CacheBackend>)``. Policy options:

    - ``cache_failing``: also record failed jobs; a later run raises the recorded error.
    - ``rerun_failing``: never reuse a recorded failure (rerun it instead).
    - ``force_run``: never reuse anything (results are still recorded).
    - ``check_code``: treat an entry made by different code (same version) as a miss; by
      default such a hit only warns that the version was not bumped.
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
        if entry.code_hash is not None:
            current = _code_hash(job)
            if current is not None and current != entry.code_hash:
                if self.check_code:
                    logger.info("cache entry of %s made by other code: rerunning (check_code=True)",
                                job.function_name)
                    return None
                warnings.warn(
                    f"hither function {job.function_name} {job.function_version}: the cached result "
                    "was made by different code under the same version. Bump the version when the "
                    "code changes results (or use hi.JobCache(..., check_code=True)).", stacklevel=2)
        if entry.status == JobStatus.FINISHED and not _files_available(entry.result):
            logger.info("cached result of %s refers to files no longer available: rerunning",
                        job.function_name)
            return None
        return entry

    def store(self, job: "Job", status: JobStatus, result: Any, error: Optional[BaseException],
              runtime_info: RuntimeInfo) -> None:
        if status == JobStatus.ERROR and not self.cache_failing:
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


def _code_hash(job: "Job") -> Optional[str]:
    # advisory only (it drives the "code changed" warning): never let it break caching,
    # e.g. where code packaging is unavailable or fails for this function
    try:
        return job.function.code_bundle().code_hash
    except Exception as exc:  # noqa: BLE001
        log = logger.debug if isinstance(exc, HitherError) else logger.info
        log("no code hash for %s (%s: %s); its cache entries skip the code check",
            job.function_name, type(exc).__name__, exc)
        return None


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
