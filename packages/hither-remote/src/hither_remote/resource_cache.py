"""The compute resource's own job cache: consulted before a job runs, filled after it ran.

A job is looked up by its job hash (from the job document's spec) with ``hi.JobCache``'s
own policy (``check_code``, recorded failures, files still available), adjusted by the
client's settings that travel with the job (``models.CachePolicy``: ``force_run`` skips the
lookup; the client's ``cache_failing``/``rerun_failing`` decide whether a recorded failure
may answer). Entries hold values, as a client's job cache does (a client and a resource may
share one MongoDB cache); a hit is packed for the client like a run's outcome (arrays and
files through the store), with ``from_resource_cache`` in its runtime info::

    cache = ResourceCache(hi.JobCache(path="/data/jc"), store, "resource1")
    packed = cache.lookup(spec, bus_job.cache_policy)     # a pack_outputs document, or None
    ...run the job in job_dir...
    cache.fill(spec, job_dir, exit_code)                  # before job_dir is removed
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from types import SimpleNamespace
from typing import Any, Dict, Optional
from urllib.parse import urlparse

from hither.errors import ConfigError
from hither.plugins.interfaces import Store

from .models import CachePolicy

logger = logging.getLogger("hither_remote.resource_cache")


def job_cache_from_option(value: str) -> Any:
    """``hi.JobCache`` for ``serve --job-cache``: a folder (file cache) or a
    ``mongodb://HOST:PORT/DATABASE`` URL (MongoDB cache; database ``hither`` by default)."""
    from hither.jobs.cache_policy import JobCache
    from hither.models import Database

    if value.startswith(("mongodb://", "mongodb+srv://")):
        u = urlparse(value)
        database = u.path.strip("/") or "hither"
        return JobCache(database=Database(mongo_url=u._replace(path="").geturl(), database=database))
    return JobCache(path=value)


class _SpecJob:
    """What ``hi.JobCache`` reads of a job (hash, name, version, code hash), from a spec."""

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.job_hash = spec["job_hash"]
        self.function_name = spec.get("function_name", "")
        self.function_version = spec.get("function_version", "")
        bundle = SimpleNamespace(code_hash=spec.get("code_hash"))
        self.function = SimpleNamespace(code_bundle=lambda: bundle)


class ResourceCache:
    """``job_cache`` in front of the jobs of the compute resource ``resource_id`` (see the
    module docstring); results of hits go to ``store``."""

    def __init__(self, job_cache: Any, store: Store, resource_id: str,
                 inline_max_bytes: Optional[int] = None) -> None:
        from hither.jobs.cache_policy import JobCache

        if not isinstance(job_cache, JobCache):
            raise ConfigError(f"ComputeResource(job_cache=...) needs hi.JobCache(...), got {job_cache!r}")
        self.job_cache = job_cache
        self.store = store
        self.resource_id = resource_id
        self.inline_max_bytes = inline_max_bytes

    def __repr__(self) -> str:
        return f"ResourceCache({self.job_cache!r})"

    def _policy(self, policy: Optional[CachePolicy]) -> Any:
        if policy is None:
            return self.job_cache
        jc = copy.copy(self.job_cache)  # the same backend, this job's settings
        jc.force_run = jc.force_run or policy.force_run
        if policy.cache_failing is not None:
            jc.cache_failing = policy.cache_failing
        jc.rerun_failing = jc.rerun_failing or bool(policy.rerun_failing)
        return jc

    def lookup(self, spec: Dict[str, Any], policy: Optional[CachePolicy]) -> Optional[Dict[str, Any]]:
        """The packed outcome (``hither.outside.documents.pack_outputs``) of the recorded run of this job,
        or None when the job must run."""
        from hither.models import JobStatus

        if not spec.get("job_hash"):
            return None
        entry = self._policy(policy).lookup(_SpecJob(spec))
        if entry is None:
            return None
        ri = {**entry.runtime_info.model_dump(mode="json"), "from_resource_cache": self.resource_id}
        scratch = tempfile.mkdtemp(prefix="hither-remote-cached-")
        try:
            if entry.status == JobStatus.FINISHED:
                _write_result(scratch, entry.result)
            else:
                _write_json(os.path.join(scratch, "error.json"), entry.error.model_dump(mode="json"))
            _write_json(os.path.join(scratch, "runtime.json"), ri)
            from hither.outside.documents import pack_outputs

            return pack_outputs(scratch, self.store, self.inline_max_bytes)
        except Exception as exc:  # noqa: BLE001 - an unusable entry: run the job instead
            logger.warning("the job cache entry of %s could not be sent (%s: %s); running it",
                           spec.get("function_name"), type(exc).__name__, exc)
            return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def fill(self, spec: Dict[str, Any], job_dir: str, exit_code: Optional[int]) -> None:
        """Record the outcome the runner left in ``job_dir`` (the cache's policy decides
        whether a failure is recorded); a failure to record only logs."""
        from hither.outside.path import read_outcome

        if not spec.get("job_hash"):
            return
        try:
            status, value, error, ri = read_outcome(job_dir, exit_code)
            self.job_cache.store(_SpecJob(spec), status, value, error, ri)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not record %s in the job cache %s: %s: %s", spec.get("function_name"),
                           self.job_cache, type(exc).__name__, exc)


def _write_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def _write_result(job_dir: str, value: Any) -> None:
    """``value`` as the runner writes a result (``result.json``, arrays as ``.npy``, files
    as copies under ``outputs/``), for ``hither.outside.documents.pack_outputs``."""
    from hither.content.folder import clone_or_copy
    from hither.outside.jobdir import array_sink
    from hither.runtime import encode_value

    def file_encoder(f: Any) -> Dict[str, Any]:
        rel = f"outputs/{f.sha1}/{f.name}"
        clone_or_copy(f.resolve(), os.path.join(job_dir, rel))
        return {"_hither": "file", "uri": f.uri, "local": rel, "sha1": f.sha1}

    _write_json(os.path.join(job_dir, "result.json"), {"value": encode_value(value, array_sink(job_dir, "result"), file_encoder)})
