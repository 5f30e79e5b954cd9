"""Pydantic models for everything hither serializes: runtime info, cache entries, job specs.

Plain classes are used inside one process; these models are the boundary formats.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hither.status import JobStatus


class RuntimeInfo(BaseModel):
    """What is known about one run of a job: console output, times, where it ran."""

    model_config = ConfigDict(extra="allow")

    status: JobStatus = JobStatus.PENDING
    stdout: str = ""
    stderr: str = ""
    start_time: Optional[float] = None
    end_time: Optional[float] = None
    host: str = ""
    pid: Optional[int] = None
    handler: str = ""
    cached: bool = False

    @property
    def elapsed(self) -> Optional[float]:
        """Seconds between start and end, or None while unknown."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    @property
    def console_out(self) -> str:
        """Stdout and stderr together, stdout first."""
        return self.stdout + self.stderr


class ErrorInfo(BaseModel):
    """A job's exception in a form that survives any boundary."""

    type_module: str = "builtins"
    type_name: str = "Exception"
    message: str = ""
    args_json: Optional[List[Any]] = None  # constructor args when they were JSON-able
    traceback: str = ""


class Database(BaseModel):
    """Where a MongoDB lives: ``hi.Database(mongo_url="mongodb://...", database="hither")``.

    Only a descriptor: the packages that talk to MongoDB (hither-cache, hither-remote) open
    the connection, so hither-core needs no pymongo.
    """

    model_config = ConfigDict(frozen=True)

    mongo_url: str = "mongodb://localhost:27017"
    database: str = "hither"


class CacheEntry(BaseModel):
    """One job-cache record. ``result`` is the decoded Python value (backends choose how to
    store arrays: see ``hither.values.codec``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    job_hash: str
    function_name: str
    function_version: str
    status: JobStatus
    result: Any = None
    error: Optional[ErrorInfo] = None
    runtime_info: RuntimeInfo = Field(default_factory=RuntimeInfo)
    code_hash: Optional[str] = None
    hither_version: str = ""
    created_at: float = Field(default_factory=time.time)


class ContainerOptions(BaseModel):
    """How a container runner runs a job: ``hi.Config(container_options={...})``.

    ``env`` variables and ``binds`` (``"host_path:container_path[:ro]"``) are added to the
    container; ``gpus`` asks for GPUs (a count or ``"all"``); ``network`` is ``"none"``
    unless a job needs the network; ``user`` is ``"uid:gid"`` (default: the calling user,
    so files a job writes are the user's); ``memory`` is a limit such as ``"2g"``; ``reuse``
    keeps one warm container per image and worker instead of one container per job;
    ``extra`` holds engine-specific options a runner documents.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Dict[str, str] = Field(default_factory=dict)
    binds: List[str] = Field(default_factory=list)
    gpus: Optional[Union[int, str]] = None
    network: str = "none"
    user: Optional[str] = None
    memory: Optional[str] = None
    reuse: bool = False
    extra: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("binds")
    @classmethod
    def _check_binds(cls, v: List[str]) -> List[str]:
        for b in v:
            parts = b.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
                    (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"bind {b!r} must look like 'host_path:container_path[:ro|rw]'")
        return v

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, v: Optional[Union[int, str]]) -> Optional[Union[int, str]]:
        if v is not None and not (v == "all" or (isinstance(v, int) and v > 0)):
            raise ValueError(f"gpus must be a positive count or 'all', not {v!r}")
        return v


class JobSpec(BaseModel):
    """Everything a process outside the caller needs to run one job with ``hither.runtime``.

    Written as ``spec.json`` into a job directory; arguments live beside it (``args.json``
    plus ``.npy`` files), the code bundle in ``code.zip``.
    """

    job_id: str
    job_hash: str
    function_name: str
    function_version: str
    module: str  # dotted module name, or "__main__"
    qualname: str
    module_relpath: str  # path of the function's file inside the bundle
    code_hash: str
    container: Optional[str] = None
    timeout: Optional[float] = None
    no_resolve_input_files: bool = False
    sys_paths: List[str] = Field(default_factory=list)  # bundle-relative import roots
    extra: Dict[str, Any] = Field(default_factory=dict)
