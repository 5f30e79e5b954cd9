"""Counts of status changes over time, kept up to date incrementally from the events table.

The first request reads the events once (one scan); later ones add only the events after
the last ``seq`` seen, so the chart's refresh costs the program that writes the log next
to nothing. Buckets have a fixed width from the first event on; when the span outgrows
``2 * buckets`` of them, neighbours merge (the width doubles).
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

from hither.events.schema import STATUSES

MIN_WIDTH = 1.0  # seconds: the finest step


class TimeCounts:
    """Per-bucket counts of events by status since the log's first event."""

    def __init__(self, buckets: int = 120) -> None:
        self.target = buckets
        self.lo: Optional[float] = None
        self.width = MIN_WIDTH
        self.seq = 0
        self.counts: Dict[str, List[int]] = {s: [] for s in STATUSES}
        self.lock = threading.Lock()

    def _grow(self, index: int) -> int:
        """Make room for bucket ``index`` (merging pairs while it is too far); its index after."""
        while index >= 2 * self.target:
            for s, row in self.counts.items():
                self.counts[s] = [sum(row[i:i + 2]) for i in range(0, len(row), 2)]
            self.width *= 2
            index //= 2
        for row in self.counts.values():
            if len(row) <= index:
                row.extend([0] * (index + 1 - len(row)))
        return index

    def add(self, rows: List[Any]) -> None:
        """Add events ``(seq, status, t)`` in seq order."""
        for seq, status, t in rows:
            if self.lo is None:
                self.lo = t
            if t < self.lo:  # an event older than the first (a clock step): into the first bucket
                t = self.lo
            index = self._grow(int((t - self.lo) / self.width))
            if status in self.counts:
                self.counts[status][index] += 1
            self.seq = seq

    def update(self, conn: Any, chunk: int = 20_000) -> None:
        """Read the events after the last one seen: the first time in one grouped scan
        (SQLite counts), then the new rows one by one."""
        with self.lock:
            if self.lo is None:
                lo, hi, last = conn.execute("SELECT MIN(t), MAX(t), MAX(seq) FROM events").fetchone()
                if lo is None:
                    return
                self.lo = lo
                while (hi - lo) / self.width >= self.target:
                    self.width *= 2
                for index, status, n in conn.execute(
                        "SELECT CAST((MAX(t, ?) - ?) / ? AS INTEGER), status, COUNT(*) FROM events "
                        "WHERE seq <= ? GROUP BY 1, 2", (lo, lo, self.width, last)):
                    index = self._grow(int(index))
                    if status in self.counts:
                        self.counts[status][index] += int(n)
                self.seq = last
            while True:
                rows = conn.execute("SELECT seq, status, t FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (self.seq, chunk)).fetchall()
                if not rows:
                    return
                self.add(rows)

    def snapshot(self) -> Dict[str, Any]:
        with self.lock:
            n = max((len(r) for r in self.counts.values()), default=0)
            lo = self.lo or 0.0
            return {"t": [lo + self.width * i for i in range(n)], "width": self.width,
                    "series": {s: row + [0] * (n - len(row)) for s, row in self.counts.items()}}
