"""The writing side of the event log: plain transitions folded into rows and written in
batches, with the log's failures sorted into "try again later" and "stop recording".

It runs in the writer process (``hither.events.sidecar``), or on the recorder's thread
when no writer process can start, and needs the standard library only. Its input is made
by ``hither.events.recorder`` from each job transition; items are tuples of plain values:

- ``("c", t, job_id, status, function_name, function_version, handler, batch, args_summary, inputs)``
  a job was created (``inputs``: ids of its input jobs, or None);
- ``("m", t, job_id, status, old_status)``: a status change that did not end the job;
- ``("s", t, job_id, "running", old_status[, info])``: the job started (``info``: its
  runtime info, when it had not ended by the time the recorder looked);
- ``("e", t, job_id, status, old_status, error_type, error_message, traceback, cached, job_hash, info)``:
  the job ended;
- ``("r", t, job_id, status, pending_reason)``: why a queued job waits changed.

``info`` is where the job ran and its runtime info: a dict of plain values, console
output already cut.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hither.events import rows
from hither.events.store import LogUnavailable, LogWriter

logger = logging.getLogger("hither.events")

INTERVAL = 0.2          # seconds between two batches
CHUNK = 2000            # jobs per transaction at most (another program waits for our lock)
MAX_PENDING = 200_000   # jobs kept while the log cannot be written; beyond, they are dropped
WARN_AFTER = 5.0        # seconds a log stays locked (or full) before the one warning
_PASSING = ("queued", "running")  # statuses a job passes through (see LogFolder._event)

Item = Tuple[Any, ...]


class LogFolder:
    """The rows and events not written yet, and the one connection that writes them.

    ``warn(message)`` is called at most once for a log that stays unwritable for a while
    or cannot take the last batch; a log that cannot be written at all raises
    :class:`LogUnavailable` (not transient) from :meth:`tick`: the caller stops recording.

    >>> folder = LogFolder(Path("/tmp/log.sqlite3"), 30.0, run_row, warn=print)  # doctest: +SKIP
    >>> folder.feed([("c", t, "r-1", "created", "add", "0.1.0", "DefaultJobHandler", None, "a=1", None)])
    >>> folder.tick(time.time())  # writes the batch
    """

    def __init__(self, path: Any, keep: float, run: Tuple[Any, ...], warn: Callable[[str], None]) -> None:
        self.path = path
        self._run = run
        self._warn = warn
        self._writer = LogWriter(path, keep)
        self._rows: Dict[str, List[Any]] = {}     # job id -> its row, merged, not yet written
        # rows of jobs that ended, as tuples (a tuple of plain values leaves the garbage
        # collector's lists at its first look)
        self._ready: List[Tuple[Any, ...]] = []
        self._events: List[Tuple[str, str, float]] = []
        self._passing: Dict[str, int] = {}  # job id -> index in _events of its passing status
        self._edges: List[Tuple[str, str]] = []
        self._failing_since: Optional[float] = None  # the log is locked or full since
        self.dropped = 0

    @property
    def keep_days(self) -> float:
        return self._writer.keep_days

    def pending(self) -> int:
        """Rows not written yet."""
        return len(self._ready) + len(self._rows)

    def feed(self, items: Sequence[Item]) -> None:
        """Fold one batch of transitions into the rows to write."""
        take = self._take
        ended: List[str] = []
        for item in items:
            if take(item):
                ended.append(item[2])
        if ended:
            pop, ready = self._rows.pop, self._ready
            for jid in ended:
                row = pop(jid, None)
                if row is not None:
                    ready.append(tuple(row))

    def _take(self, item: Item, STATUS: int = rows.STATUS, UPDATED_AT: int = rows.UPDATED_AT) -> bool:
        """Fold one transition; True when it ended its job."""
        kind, t, jid, status = item[0], item[1], item[2], item[3]
        row = self._rows.get(jid)
        if row is None:
            row = self._rows[jid] = rows.new_row(jid, self._run[0])
        ended = False
        if kind == "c":
            self._created(row, item, t)
            prev = "created"
        elif kind == "r":
            row[STATUS], row[rows.PENDING_REASON], row[UPDATED_AT] = status, item[4], t
            return False
        else:
            prev = item[4]
            if kind == "e":
                row[rows.ENDED_AT] = t
                (row[rows.ERROR_TYPE], row[rows.ERROR_MESSAGE], row[rows.TRACEBACK],
                 row[rows.CACHED], row[rows.JOB_HASH]) = item[5:10]
                self._detail(row, item[10])
                ended = True
            elif kind == "s":
                row[rows.STARTED_AT] = t
                if len(item) > 5:
                    self._detail(row, item[5])
        if status != prev:
            self._event(jid, status, t)
        row[STATUS] = status
        row[UPDATED_AT] = t
        return ended

    def _event(self, jid: str, status: str, t: float) -> None:
        """Add a status change to the batch. A passing status (queued, running) that a
        later change of the same batch replaces is not kept: a job that goes through
        several within one batch (0.2 s) records only the last (about half the rows
        for small jobs; counts over time have the batch's resolution anyway)."""
        events = self._events
        at = self._passing.pop(jid, None)
        if at is not None:
            events[at] = (jid, status, t)
        else:
            at = len(events)
            events.append((jid, status, t))
        if status in _PASSING:
            self._passing[jid] = at

    def _created(self, row: List[Any], item: Item, t: float) -> None:
        jid, inputs = item[2], item[9]
        self._events.append((jid, "created", t))
        (row[rows.FUNCTION_NAME], row[rows.FUNCTION_VERSION], row[rows.HANDLER], row[rows.BATCH],
         row[rows.ARGS_SUMMARY]) = item[4:9]
        row[rows.CREATED_AT] = t
        if inputs:
            self._edges.extend((jid, d) for d in inputs)

    @staticmethod
    def _detail(row: List[Any], info: Dict[str, Any], host_name: str = rows.HOST_NAME) -> None:
        """Where the job ran, and its runtime info."""
        pid = info.get("pid")
        row[rows.HOST] = str(info.get("host") or host_name)
        row[rows.PID] = pid if type(pid) is int else None
        batch = rows.batch_of(info, None, None)
        if batch is not None:
            row[rows.BATCH] = batch
        row[rows.RUNTIME_INFO] = rows.runtime_json(info)

    # ------------------------------------------------------------------ writing
    def tick(self, now: float, last: bool = False) -> None:
        """Write the rows made so far; a locked or full log: later (warned once when it
        lasts); a log that cannot be written raises :class:`LogUnavailable`."""
        if self.pending() or self._events:
            try:
                self._flush()
                self._failing_since = None
            except LogUnavailable as exc:
                if not exc.transient:
                    raise
                # another program's write holds the lock now and then: that is no news
                since = self._failing_since = self._failing_since or now
                if now - since >= WARN_AFTER:
                    self._warn(f"hither could not record jobs to {self.path} for {now - since:.0f} s "
                               f"({exc}); it tries again later")
                if self.pending() > MAX_PENDING:
                    self.dropped += self.pending()
                    self._rows.clear()
                    self._ready.clear()
                    self._events.clear()
                    self._passing.clear()
                    self._edges.clear()
        if not last and self._writer.keep_days > 0:
            self._writer.maybe_prune(now)

    def _flush(self) -> None:
        """Write every pending row, ``CHUNK`` jobs per transaction (each with its events and
        edges); what a failing transaction did not write stays pending, older rows first."""
        run = (*self._run[:-1], time.time())
        jobs: List[Sequence[Any]] = [*self._ready, *[tuple(r) for r in self._rows.values()]]
        self._ready, self._rows = [], {}
        written = 0
        try:
            for start in range(0, max(len(jobs), 1), CHUNK):
                part = jobs[start:start + CHUNK]
                if start + CHUNK >= len(jobs):
                    events, edges = self._events, self._edges
                else:
                    ids = {r[0] for r in part}
                    events = [e for e in self._events if e[0] in ids]
                    edges = [e for e in self._edges if e[0] in ids]
                self._writer.write(run, part, events, edges)
                written = start + len(part)
                if events is self._events:
                    self._events, self._edges = [], []
                else:
                    self._events = [e for e in self._events if e[0] not in ids]
                    self._edges = [e for e in self._edges if e[0] not in ids]
                self._passing.clear()  # indexes into the old list; a later change appends
        finally:
            self._ready = [tuple(r) for r in jobs[written:]]

    def close(self) -> None:
        self._writer.close()
