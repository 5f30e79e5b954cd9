"""The recorder's side of the SQLite log: open it, write one batch in one transaction,
prune old jobs, and sort failures into "try again later" and "stop recording"."""
from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from hither.events import rows
from hither.events.log import open_log

logger = logging.getLogger("hither.events")

BUSY_TIMEOUT = 0.05     # seconds a write waits for another program's lock, then tries later
PRUNE_EVERY = 86400.0   # seconds between two prunes of the log (by any program)
_UPSERT = rows.upsert_sql()
#: rows per INSERT statement: one statement (one sqlite3_step, which releases the GIL and
#: takes it back) for many rows, not one per row; 40 x 21 columns stays under the 999
#: parameters of an old SQLite
ROWS_PER_STATEMENT = 40
_EVENT = "INSERT INTO events (job_id, status, t) VALUES (?, ?, ?)"
_EDGE = "INSERT OR IGNORE INTO edges (job_id, input_job_id) VALUES (?, ?)"


def _many(sql: str, n: int = ROWS_PER_STATEMENT) -> str:
    """``sql`` (an INSERT of one row ``VALUES (...)``, maybe with an upsert clause after it)
    inserting ``n`` rows."""
    head, rest = sql.split(" VALUES ", 1)
    one = rest[:rest.index(")") + 1]
    return f"{head} VALUES {', '.join([one] * n)}{rest[len(one):]}"


_STATEMENTS = [(sql, _many(sql)) for sql in (_UPSERT, _EVENT, _EDGE)]


def _insert(con: sqlite3.Connection, which: int, rows_: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows_`` with statement ``which`` of ``_STATEMENTS``, ``ROWS_PER_STATEMENT``
    rows at a time."""
    one, many = _STATEMENTS[which]
    k = ROWS_PER_STATEMENT
    n = len(rows_) - len(rows_) % k
    if n:
        chain = itertools.chain.from_iterable
        con.executemany(many, [tuple(chain(rows_[i:i + k])) for i in range(0, n, k)])
    if n < len(rows_):
        con.executemany(one, rows_[n:])
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL")


class LogUnavailable(Exception):
    """The log cannot take this batch; ``transient``: try again later, else stop recording."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _classify(path: Path, exc: BaseException) -> LogUnavailable:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    transient = name in _TRANSIENT or any(w in text for w in ("locked", "busy", "disk is full"))
    return LogUnavailable(f"{path}: {type(exc).__name__}: {text}", transient)


class LogWriter:
    """One connection to the log, used by the recorder's thread only."""

    def __init__(self, path: Path, keep_days: float) -> None:
        self.path = path
        self.keep_days = keep_days
        self._con: Optional[sqlite3.Connection] = None
        self._run_written = False
        self._next_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            try:
                self._con = open_log(self.path, readonly=False, timeout=BUSY_TIMEOUT)
            except (sqlite3.Error, OSError) as exc:
                raise _classify(self.path, exc) from None
        return self._con

    def write(self, run: Tuple[Any, ...], jobs: Sequence[Sequence[Any]],
              events: Sequence[Tuple[str, str, float]], edges: Sequence[Tuple[str, str]]) -> None:
        """Write one batch in one transaction (all or nothing); ``run``: this program's row."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            if self._run_written:
                con.execute("UPDATE runs SET last_seen = ? WHERE run_id = ?", (run[-1], run[0]))
            else:
                con.execute("INSERT OR REPLACE INTO runs (run_id, host, pid, argv, cwd, started_at, "
                            "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)", run)
            _insert(con, 0, jobs)
            _insert(con, 1, events)
            _insert(con, 2, edges)
            con.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._rollback()
            raise _classify(self.path, exc) from None
        self._run_written = True

    def _rollback(self) -> None:
        try:
            if self._con is not None and self._con.in_transaction:
                self._con.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def maybe_prune(self, now: float) -> int:
        """Remove jobs not updated for ``keep_days`` (and their events and edges), at most
        once a day across every program writing the log (a stamp file beside it says
        when it last happened). Returns the jobs removed; never raises."""
        if self.keep_days <= 0 or now < self._next_prune:
            return 0
        self._next_prune = now + PRUNE_EVERY
        stamp = Path(f"{self.path}.pruned")
        try:
            if now - stamp.stat().st_mtime < PRUNE_EVERY:
                return 0
        except OSError:
            pass  # never pruned
        try:
            removed = self._prune(now - self.keep_days * 86400.0)
            stamp.touch()
            os.utime(stamp, (now, now))
        except (sqlite3.Error, OSError, LogUnavailable) as exc:
            logger.debug("could not prune the job event log %s: %s", self.path, exc)
            self._rollback()
            return 0
        return removed

    def _prune(self, cutoff: float) -> int:
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        old: List[Tuple[str]] = con.execute("SELECT job_id FROM jobs WHERE updated_at < ?", (cutoff,)).fetchall()
        con.executemany("DELETE FROM edges WHERE job_id = ?", [(r[0],) for r in old])
        con.execute("DELETE FROM jobs WHERE updated_at < ?", (cutoff,))
        # the newest event stays: a reader follows the log by seq, which must never go back
        con.execute("DELETE FROM events WHERE t < ? AND seq < (SELECT MAX(seq) FROM events)", (cutoff,))
        con.execute("DELETE FROM runs WHERE last_seen < ?", (cutoff,))
        con.execute("COMMIT")
        if old:
            logger.info("pruned %d jobs older than %s from %s", len(old), time.ctime(cutoff), self.path)
        return len(old)

    def close(self) -> None:
        if self._con is not None:
            self._rollback()
            try:
                self._con.close()
            except sqlite3.Error:
                pass
            self._con = None
