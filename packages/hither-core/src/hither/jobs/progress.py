"""Waiting on jobs, with a one-line progress display (done/total, rate, ETA) on long waits
at a terminal or in a notebook, redrawn on a timer by the waiting thread."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, TextIO

from hither.models import JobStatus

logger = logging.getLogger("hither.jobs.progress")

_REFRESH = 0.5  # seconds between redraws


def _first_display_after() -> float:
    """Seconds of waiting before the line appears (short waits stay quiet): 2, or
    ``HITHER_PROGRESS_AFTER``; a value that is not a number of seconds is named in a
    warning, and the wait goes on with the default."""
    text = os.environ.get("HITHER_PROGRESS_AFTER", "").strip()
    if not text:
        return 2.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        logger.warning("HITHER_PROGRESS_AFTER=%r is not a number of seconds (e.g. 2 or 0.5); "
                       "using 2", text)
        return 2.0
    return value


def _in_notebook(stream: Any) -> bool:
    """Whether ``stream`` is a Jupyter kernel's output stream (ipykernel's ``OutStream``),
    where a line redrawn with ``\\r`` shows as one line in the cell's output."""
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


def progress_stream() -> Optional[TextIO]:
    """Where the progress line goes: stderr when it is a terminal or a notebook's stream,
    or whatever it is under ``HITHER_PROGRESS=1``; None under ``HITHER_PROGRESS=0`` and
    elsewhere (a pipe, a file, a log)."""
    forced = os.environ.get("HITHER_PROGRESS", "").strip().lower()
    stream = sys.stderr
    if forced in ("0", "no", "false", "off") or stream is None:
        return None
    if forced in ("1", "yes", "true", "on"):
        return stream
    try:
        at_terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return None
    return stream if at_terminal or _in_notebook(stream) else None


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLine:
    """The one line: ``hither: 12/20 done (2 running, 6 queued) | 3.9 jobs/s | ETA 2s``,
    drawn with ``\\r`` over itself and ended with a newline by ``close`` (so it is never
    left half-drawn, also on Ctrl-C). It counts every job it was shown."""

    def __init__(self, stream: Optional[TextIO]) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.next_draw = self.start + (_first_display_after() if stream is not None else 0.0)
        self.jobs: Dict[int, Any] = {}
        self.done_at_start: Optional[int] = None
        self.width = 0  # of the longest line drawn, to blank what a shorter one leaves

    def add(self, jobs: Iterable[Any]) -> None:
        for j in jobs:
            self.jobs.setdefault(id(j), j)
        if self.done_at_start is None:
            self.done_at_start = sum(1 for j in self.jobs.values() if j.is_done())

    def text(self) -> str:
        counts = {s: 0 for s in JobStatus}
        for j in self.jobs.values():
            counts[j.get_status()] += 1
        total = len(self.jobs)
        ended = counts[JobStatus.FINISHED] + counts[JobStatus.ERROR] + counts[JobStatus.CANCELLED]
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (ended - (self.done_at_start or 0)) / elapsed
        parts = [f"hither: {ended}/{total} done ({counts[JobStatus.RUNNING]} running, "
                 f"{counts[JobStatus.QUEUED] + counts[JobStatus.PENDING]} queued)"]
        if counts[JobStatus.ERROR] or counts[JobStatus.CANCELLED]:
            parts.append(f"{counts[JobStatus.ERROR]} failed, {counts[JobStatus.CANCELLED]} cancelled")
        if ended < total:
            parts.append(f"{rate:.1f} jobs/s" if rate > 0 else "- jobs/s")
            parts.append(f"ETA {_duration(max(1.0, (total - ended) / rate))}" if rate > 0 else "ETA ?")
        parts.append(f"elapsed {_duration(elapsed)}")
        return " | ".join(parts)

    def tick(self) -> None:
        """Redraw when it is time (the first time after ``HITHER_PROGRESS_AFTER`` s)."""
        now = time.monotonic()
        if self.stream is not None and now >= self.next_draw:
            self.next_draw = now + _REFRESH
            self._draw(end="")

    def wait_step(self) -> float:
        """Seconds until the next redraw (a long time when nothing is drawn)."""
        if self.stream is None:
            return 3600.0
        return max(0.0, self.next_draw - time.monotonic())

    def close(self) -> None:
        """End the line (once drawn) with its final state and a newline."""
        if self.stream is not None and self.width:
            self._draw(end="\n")
            self.width = 0

    def _draw(self, end: str) -> None:
        assert self.stream is not None
        line = self.text()
        if not _in_notebook(self.stream):
            # a terminal of unknown size says 0 columns (Python 3.10 passes that on)
            cols = shutil.get_terminal_size((100, 24)).columns or 100
            line = line[: max(cols - 1, 20)]  # a wrapped line cannot be redrawn with \r
        pad = " " * max(0, self.width - len(line))
        self.width = max(self.width, len(line))
        try:
            self.stream.write("\r" + line + pad + end)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal: stop drawing, keep waiting
            self.stream = None


def wait_with_progress(jobs: Iterable[Any], timeout: Optional[float] = None,
                       line: Optional[ProgressLine] = None) -> bool:
    """Wait until every job is done; False if ``timeout`` ran out first. With ``line``,
    it is redrawn every ``_REFRESH`` s from this thread while waiting (the caller closes
    it); without, a line is shown for more than one job and closed here."""
    todo: List[Any] = list(jobs)
    own = line is None
    if line is None:
        line = ProgressLine(progress_stream() if len(todo) > 1 else None)
    line.add(todo)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for job in todo:
            while not job.is_done():
                step = line.wait_step()
                if deadline is not None:
                    step = min(step, deadline - time.monotonic())
                    if step <= 0:
                        return False
                job.wait_done(step)
                line.tick()
        return True
    finally:
        if own:
            line.close()
