"""``SlurmOptions``: the validated options of a SlurmJobHandler, and the sbatch/srun
command lines they make."""
from __future__ import annotations

import math
import os
import re
from typing import Any, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hither.errors import ConfigError

#: a pilot starts a job only if it can end this many seconds before the batch does
END_MARGIN = 5.0

_MEM = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?B?$", re.IGNORECASE)


class SlurmOptions(BaseModel):
    """Options of ``hi.SlurmJobHandler`` (times in seconds, memory like ``"4G"``/``"500M"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    working_dir: str = Field(description="a folder every node and this machine see at the same path")
    num_workers_per_batch: int = Field(14, ge=1, description="jobs one allocation runs at once")
    num_cores_per_job: int = Field(2, ge=1, description="CPU cores each job gets")
    time_limit_per_batch: Optional[float] = Field(None, gt=0, description="seconds per batch (sbatch --time)")
    max_simultaneous_batches: Optional[int] = Field(None, ge=1, description="batches running at once (None: no limit)")
    additional_srun_opts: List[str] = Field(default_factory=list, description="more srun options, one each")
    additional_sbatch_opts: List[str] = Field(default_factory=list, description="more sbatch options, one each")
    use_slurm: bool = Field(True, description="start pilots with sbatch; False: as local processes")
    partition: Optional[str] = Field(None, description="Slurm partition (sbatch --partition)")
    account: Optional[str] = Field(None, description="Slurm account (sbatch --account)")
    mem_per_job: Optional[str] = Field(None, description='memory per job, e.g. "4G"')
    gpus_per_job: int = Field(0, ge=0, description="GPUs per job (sbatch --gres=gpu:N)")
    idle_timeout: float = Field(60.0, gt=0, description="seconds a pilot waits for work before its batch ends")
    pending_timeout: Optional[float] = Field(
        3600.0, gt=0, description="seconds a batch may wait in the Slurm queue before its jobs fail "
        "(None or inf: wait for ever); a batch Slurm can never start fails at once")
    python: Optional[str] = Field(None, description="the Python the pilots run (default: this one)")
    poll_interval: float = Field(0.05, gt=0, le=5, description="seconds between two looks at the queue folder")

    @model_validator(mode="before")
    @classmethod
    def _no_bools(cls, data: Any) -> Any:
        # pydantic reads True as 1: num_workers_per_batch=True is a mistake, not one worker
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if field.annotation is not bool and isinstance(data.get(name), bool):
                    raise ValueError(f"{name} needs a number, got {data[name]!r}")
        return data

    @field_validator("time_limit_per_batch", "pending_timeout")
    @classmethod
    def _inf_is_none(cls, v: Optional[float]) -> Optional[float]:
        return None if v is not None and math.isinf(v) else v  # no limit, as None says

    @field_validator("idle_timeout")
    @classmethod
    def _finite_idle(cls, v: float) -> float:
        if math.isinf(v):
            raise ValueError("idle pilots must exit at some point (they hold an allocation); "
                             "give seconds, e.g. 600")
        return v

    @field_validator("working_dir")
    @classmethod
    def _abs_dir(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("working_dir must name a folder (shared by this machine and the nodes)")
        return os.path.abspath(os.path.expanduser(v))

    @field_validator("mem_per_job")
    @classmethod
    def _mem(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _MEM.match(str(v).strip()):
            raise ValueError(f'{v!r} is not a memory size; write e.g. "4G", "500M" or "2048" (MB)')
        return None if v is None else str(v).strip().upper().rstrip("B")

    @field_validator("additional_srun_opts", "additional_sbatch_opts")
    @classmethod
    def _opts(cls, v: List[str]) -> List[str]:
        if isinstance(v, str):
            raise ValueError("give a list of options, e.g. ['--constraint=haswell'], not one string")
        for o in v:
            if not isinstance(o, str) or not o.startswith("-"):
                raise ValueError(f"{o!r} is not a command-line option (options start with '-')")
        return list(v)


def parse_options(**kwargs: object) -> SlurmOptions:
    """``SlurmOptions(**kwargs)``, with a ``ConfigError`` naming each bad option."""
    try:
        return SlurmOptions(**kwargs)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            ("{}: ".format(".".join(str(p) for p in e["loc"])) if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"invalid hi.SlurmJobHandler options: {problems}") from None


def _mem_mb(mem: str) -> int:
    num, unit = float(re.match(r"[\d.]+", mem).group()), mem.lstrip("0123456789.").strip()[:1]  # type: ignore[union-attr]
    return int(math.ceil(num * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[unit]))


def slurm_time(seconds: float) -> str:
    """sbatch --time in D-HH:MM:SS, rounded up to whole minutes (Slurm's granularity)."""
    minutes = int(math.ceil(seconds / 60.0))
    d, rest = divmod(minutes * 60, 86400)
    h, rest = divmod(rest, 3600)
    return f"{d}-{h:02d}:{rest // 60:02d}:00"


def sbatch_args(opts: SlurmOptions, job_name: str, output: str) -> List[str]:
    """The sbatch options of one pilot batch (one task holding every worker's cores)."""
    n = opts.num_workers_per_batch
    args = ["--parsable", f"--job-name={job_name}", f"--output={output}", "--ntasks=1",
            f"--cpus-per-task={n * opts.num_cores_per_job}"]
    if opts.time_limit_per_batch:
        args.append(f"--time={slurm_time(opts.time_limit_per_batch)}")
    if opts.partition:
        args.append(f"--partition={opts.partition}")
    if opts.account:
        args.append(f"--account={opts.account}")
    if opts.mem_per_job:
        args.append(f"--mem={_mem_mb(opts.mem_per_job) * n}M")
    if opts.gpus_per_job:
        args.append(f"--gres=gpu:{opts.gpus_per_job * n}")
    return args + list(opts.additional_sbatch_opts)
