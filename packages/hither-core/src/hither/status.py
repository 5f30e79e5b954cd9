"""``hi.JobStatus`` (kept free of heavy imports: workers import it)."""
from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """Life cycle of a job: PENDING (waiting for input jobs) -> QUEUED -> RUNNING -> an end state."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_done(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.ERROR, JobStatus.CANCELLED)
