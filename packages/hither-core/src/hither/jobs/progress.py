"""Waiting on jobs, with a one-line progress display on long waits at a terminal."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, List, Optional

from hither.models import JobStatus

logger = logging.getLogger("hither.jobs.progress")

# seconds of waiting before the display appears (short waits stay quiet)
_FIRST_DISPLAY_AFTER = float(os.environ.get("HITHER_PROGRESS_AFTER", "2.0"))
_REFRESH = 0.5


def _summary(jobs: List["object"]) -> str:
    counts = {s: 0 for s in JobStatus}
    for j in jobs:
        counts[j.get_status()] += 1  # type: ignore[attr-defined]
    return (f"hither: {counts[JobStatus.FINISHED]} done, {counts[JobStatus.RUNNING]} running, "
            f"{counts[JobStatus.QUEUED] + counts[JobStatus.PENDING]} queued, "
            f"{counts[JobStatus.ERROR]} failed, {counts[JobStatus.CANCELLED]} cancelled")


def wait_with_progress(jobs: Iterable["object"], timeout: Optional[float] = None,
                       show: Optional[bool] = None) -> bool:
    """Wait until every job is done; False if ``timeout`` ran out first."""
    jobs = list(jobs)
    deadline = None if timeout is None else time.monotonic() + timeout
    if show is None:
        stream = sys.__stderr__
        show = bool(stream is not None and stream.isatty()) and len(jobs) > 1
    start = time.monotonic()
    shown = False
    out = sys.__stderr__
    try:
        for job in jobs:
            while not job.is_done():  # type: ignore[attr-defined]
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                step = _REFRESH if show else 3600.0
                if deadline is not None:
                    step = min(step, deadline - now)
                if job.wait_done(step):  # type: ignore[attr-defined]
                    break
                if show and out is not None and time.monotonic() - start >= _FIRST_DISPLAY_AFTER:
                    out.write("\r" + _summary(jobs) + "\033[K")
                    out.flush()
                    shown = True
        return True
    finally:
        if shown and out is not None:
            out.write("\r" + _summary(jobs) + "\033[K\n")
            out.flush()
