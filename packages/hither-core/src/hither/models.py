"""Pydantic models for everything hither serializes: runtime info, cache entries, job specs.

Plain classes are used inside one process; these models are the boundary formats.
"""
from __future__ import annotations

import difflib
import re
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
    #: runs of the job so far (``hi.Retry``), and each failed run's error, one line each
    attempts: int = 1
    attempt_errors: List[str] = Field(default_factory=list)
    #: the Slurm job of the batch that ran it (hither-slurm); None until it runs there
    slurm_job_id: Optional[Union[str, int]] = None

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
    attrs_json: Optional[Dict[str, Any]] = None  # its own attributes that were JSON-able
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


#: the ``ContainerOptions.extra`` keys the container runners read (hither-container's docs)
CONTAINER_EXTRA_KEYS = ("mount_hither", "pull", "idle_timeout", "docker", "command",
                        "isolate_network")
_MEMORY = re.compile(r"^([0-9]+)([bkmg]b?)?$", re.IGNORECASE)
_PROTECTED = ("/", "/proc", "/sys", "/dev")  # no bind may cover these


class ContainerOptions(BaseModel):
    """How a container runner runs a job: ``hi.Config(container_options={...})``.

    ``env`` variables and ``binds`` (``"host_path:container_path[:ro]"``) are added to the
    container; ``gpus`` asks for GPUs (a count or ``"all"``); ``network`` is ``"none"``
    unless a job needs the network; ``user`` is ``"uid:gid"`` (default: the calling user,
    so files a job writes are the user's); ``memory`` is a limit such as ``"2g"``; ``reuse``
    keeps one warm container per image and worker instead of one container per job;
    ``extra`` holds engine-specific options a runner documents (``CONTAINER_EXTRA_KEYS``).

    Hardening, on by default (Docker; each can be turned off): ``pids_limit`` (processes
    in the container), ``read_only`` (the image's file system read-only; the job folder
    and a tmpfs ``/tmp`` stay writable), ``init`` (docker's init as process 1, forwarding
    SIGTERM and reaping), ``no_new_privileges`` and ``cap_drop`` (capabilities dropped).
    Every field is checked here, so a mistake fails at ``.run()`` naming the field.
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
    pids_limit: Optional[int] = 4096
    read_only: bool = True
    init: bool = True
    no_new_privileges: bool = True
    cap_drop: List[str] = Field(default_factory=lambda: ["ALL"])

    @field_validator("binds")
    @classmethod
    def _check_binds(cls, v: List[str]) -> List[str]:
        for b in v:
            parts = b.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
                    (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"bind {b!r} must look like 'host_path:container_path[:ro|rw]'")
            inside = parts[1].rstrip("/") or "/"
            if not inside.startswith("/"):
                raise ValueError(f"bind {b!r}: the container path must be absolute")
            if inside in _PROTECTED or any(inside.startswith(p + "/") for p in _PROTECTED[1:]):
                raise ValueError(f"bind {b!r} would cover the container's {inside}: "
                                 "bind onto a folder of its own, e.g. /data")
        return v

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, v: Optional[Union[int, str]]) -> Optional[Union[int, str]]:
        if v is not None and not (v == "all" or (isinstance(v, int) and v > 0)):
            raise ValueError(f"gpus must be a positive count or 'all', not {v!r}")
        return v

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        m = _MEMORY.match(str(v).strip())
        if not m or int(m.group(1)) <= 0:
            raise ValueError(f"memory must be a positive size such as '512m' or '2g' "
                             f"(bytes, or a k/m/g suffix), not {v!r}")
        return str(v).strip()

    @field_validator("network")
    @classmethod
    def _check_network(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("network must name a network ('none', 'bridge', 'host', ...)")
        return v

    @field_validator("pids_limit")
    @classmethod
    def _check_pids(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v <= 0:
            raise ValueError(f"pids_limit must be a positive count (None: no limit), not {v!r}")
        return v

    @field_validator("extra")
    @classmethod
    def _check_extra(cls, v: Dict[str, Any]) -> Dict[str, Any]:
        for key in v:
            if key not in CONTAINER_EXTRA_KEYS:
                close = difflib.get_close_matches(key, CONTAINER_EXTRA_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"extra has an unknown key {key!r}{hint} (known: "
                                 f"{', '.join(CONTAINER_EXTRA_KEYS)})")
        if "pull" in v and v["pull"] not in ("missing", "never"):
            raise ValueError(f"extra['pull'] must be 'missing' or 'never', not {v['pull']!r}")
        if "idle_timeout" in v:
            t = v["idle_timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
                raise ValueError(f"extra['idle_timeout'] must be a positive number of seconds, "
                                 f"not {t!r}")
        if "docker" in v and not isinstance(v["docker"], dict):
            raise ValueError("extra['docker'] must be a dict of docker-py create() arguments")
        for key in ("mount_hither", "isolate_network"):
            if key in v and not isinstance(v[key], bool):
                raise ValueError(f"extra[{key!r}] must be True or False, not {v[key]!r}")
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
    #: a ``__main__`` function's plain-data globals at hand-off, name -> wire-encoded value
    #: (``hither.outside.script_globals``); the runner sets them in the loaded script. A
    #: runner older than the field ignores it (the function then sees its file's values).
    script_globals: Dict[str, Any] = Field(default_factory=dict)
