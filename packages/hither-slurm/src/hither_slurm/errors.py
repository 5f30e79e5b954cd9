"""Errors of hither-slurm (all are ``hither.errors.HitherError``)."""
from __future__ import annotations

from hither.errors import HitherError, WorkerDiedError


class SlurmError(HitherError):
    """A Slurm command (sbatch, squeue, scancel) failed; the message holds its output."""


class AllocationLostError(WorkerDiedError):
    """The Slurm allocation (or the pilot process) running the job ended while the job ran
    (a hither job is then rerun by its ``hi.Retry`` policy; a job directory was already
    requeued once). An infrastructure failure (``hither.errors.is_infrastructure_failure``)."""
