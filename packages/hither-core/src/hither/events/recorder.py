"""The recorder: each job transition is queued on the caller's thread as one small tuple
(``put``); one daemon thread turns them into rows and writes them in batches.

The job shell (``hither.jobs.job.Job.apply``) calls ``put(job, event, old, new, info,
inputs)`` after every transition that changed the job's state record, when ``put`` is not
None (``info``: the job's runtime info dict; ``inputs``: its list of input jobs). ``put``
starts as :func:`_start`, which reads the environment at the first job: with
``HITHER_MONITOR=0`` it becomes None (no thread, no queue, nothing per job); else a
:class:`Recorder` starts and ``put`` becomes its ``put``, which queues one tuple. A log that cannot be written
costs one warning; recording then stops (read-only, corrupt, not a file) or retries at the
next batch (locked, full), and a job never waits for the log nor sees its errors.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from hither.events import rows
from hither.events.log import default_log_path, keep_days, recording_enabled
from hither.events.store import LogUnavailable, LogWriter
from hither.status import JobStatus

logger = logging.getLogger("hither.events")

#: this program's id in the log; a job's id is ``<RUN_ID>-<n>`` (a forked child gets its own)
RUN_ID = os.urandom(6).hex()

INTERVAL = 0.2          # seconds between two batches
DRAIN_EVERY = 0.005     # seconds between two looks at the queue while jobs come in
CHUNK = 2000            # jobs per transaction at most (another program waits for our lock)
EXIT_WAIT = 1.0         # seconds the exit waits for the last batch
MAX_PENDING = 200_000   # jobs kept while the log cannot be written; beyond, they are dropped
REASON_EVERY = 1.0      # seconds between two looks at queued jobs' pending reasons
WARN_AFTER = 5.0        # seconds a log stays locked (or full) before the one warning

Put = Callable[[Any, Any, Any, Any, Dict[str, Any], List[Any]], None]
_CREATED, _MOVED, _ENDED = "created", "moved", "ended"  # kinds of queued transitions
_STATUS = {s: ("created" if s is JobStatus.PENDING else s.value) for s in JobStatus}
_PASSING = ("queued", "running")  # statuses a job passes through (see Recorder._event)


def _status(status: JobStatus) -> str:
    """The log's name of a job status (pending is ``created``)."""
    return _STATUS[status]


class Recorder:
    """The queue of transitions and the thread writing them to the log at ``path``
    (``first``: a job state record, whose class gives the step values)."""

    def __init__(self, path: Path, keep: float, run_id: str, first: Any) -> None:
        self.run_id = run_id
        self.path = path
        self._q: Deque[Tuple[Any, ...]] = collections.deque()
        self._writer = LogWriter(path, keep)
        self._rows: Dict[str, List[Any]] = {}     # job id -> its row, merged, not yet written
        # rows of jobs that ended, as tuples: a tuple of plain values leaves the garbage
        # collector's lists at its first look, so a batch waiting to be written does not
        # make the program's full collections come sooner and last longer (lists would)
        self._ready: List[Tuple[Any, ...]] = []
        self._ended_ids: List[str] = []
        self._events: List[Tuple[str, str, float]] = []
        self._passing: Dict[str, int] = {}  # job id -> index in _events of its passing status
        self._edges: List[Tuple[str, str]] = []
        self._waiting: Dict[str, Tuple[Dict[str, Any], str, Any]] = {}  # queued: info, status, reason
        self._detail: Dict[str, Tuple[Dict[str, Any], Any]] = {}  # job id -> its info, the event's
        self._next_reasons = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._exit_wait = EXIT_WAIT - 0.1
        self._warned = False
        self._failing_since: Optional[float] = None  # the log is locked or full since
        self.dropped = 0
        self.put: Put = self._make_put(first)
        self._thread = threading.Thread(target=self._loop, name="hither-events", daemon=True)
        self._thread.start()

    def _make_put(self, first: Any) -> Put:
        """The function the job shell calls at each transition (``first``: a state record,
        for the step values). It queues one tuple of what the writer needs, never the job
        nor its state record: a job kept alive by the queue would survive into the garbage
        collector's older generations and make every collection of the program longer
        (about 10 µs per job, measured)."""
        steps = type(first.step)

        def put(job: Any, event: Any, old: Any, new: Any, info: Dict[str, Any], inputs: List[Any],
                append: Any = self._q.append, now: Any = time.time, NEW: Any = steps["NEW"],
                DONE: Any = steps["DONE"]) -> None:
            if old.step is NEW:
                # a pipeline job's arguments hold its input jobs: summarised now, so the queue
                # never keeps them (and their results) alive after the job has let go of them
                append((now(), job.id, _CREATED, new.status, job.function, job.handler, job.container,
                        rows.args_summary(job.kwargs) if inputs else job.kwargs,
                        tuple([d.id for d in inputs]) if inputs else None, info))
            elif new.step is DONE:
                append((now(), job.id, _ENDED, new.status, old.status, info,
                        getattr(event, "runtime_info", None), new.error, new.from_cache,
                        getattr(job, "_hash", None)))
            elif new.status is not old.status:
                append((now(), job.id, _MOVED, new.status, old.status, info,
                        getattr(event, "runtime_info", None)))
        return put

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        try:
            self._writer.maybe_prune(time.time())
            next_write = time.monotonic() + INTERVAL
            busy = False
            while not self._stopping:
                if self._wake.wait(DRAIN_EVERY if busy else INTERVAL) and not self._stopping:
                    self._wake.clear()  # a nudge (write now), not a stop
                busy = self._drain()
                if time.monotonic() >= next_write or not busy:
                    self._tick()
                    next_write = time.monotonic() + INTERVAL
            deadline = time.monotonic() + self._exit_wait
            self._tick()
            while self._pending() and time.monotonic() < deadline:  # another program holds the lock
                time.sleep(0.02)
                self._tick()
            if self._pending():  # the last batch found the log locked or full
                self._warn(f"hither could not record the last {self._pending()} jobs to {self.path} "
                           "(it was locked or full at exit)")
        except LogUnavailable as exc:
            self._give_up(str(exc))
        except Exception as exc:  # never let the recorder take anything down
            self._give_up(f"internal error: {type(exc).__name__}: {exc}")
            logger.debug("the job event recorder stopped", exc_info=True)
        finally:
            self._writer.close()

    def _give_up(self, why: str) -> None:
        global put
        if put == self.put:
            put = None
        self._q.clear()
        self._warn(f"hither stops recording jobs to {self.path}: {why} (set HITHER_MONITOR_DB "
                   "to a writable file, or HITHER_MONITOR=0 to turn this off)")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message)

    def _drain(self) -> bool:
        """Turn what was queued into rows, letting go of the jobs at once (a job kept
        alive for long by the queue survives into the garbage collector's older
        generations, and the program's full collections grow); False if nothing was."""
        q = self._q
        if not q:
            return False
        while q:
            self._take(q.popleft())
        self._details()
        if self._ended_ids:
            pop, ready = self._rows.pop, self._ready
            for jid in self._ended_ids:
                row = pop(jid, None)
                if row is not None:
                    ready.append(tuple(row))
            self._ended_ids.clear()
        return True

    def _pending(self) -> int:
        """Rows not written yet."""
        return len(self._ready) + len(self._rows)

    def _tick(self) -> None:
        """Write the rows made so far (a locked or full log: later)."""
        self._drain()
        now = time.time()
        if self._waiting and now >= self._next_reasons:
            self._next_reasons = now + REASON_EVERY
            self._look_at_reasons(now)
        if not self._pending() and not self._events:
            return
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
            if self._pending() > MAX_PENDING:
                self.dropped += self._pending()
                self._rows.clear()
                self._ready.clear()
                self._events.clear()
                self._passing.clear()
                self._edges.clear()
        if self._writer.keep_days > 0:
            self._writer.maybe_prune(now)

    def _flush(self) -> None:
        """Write every pending row, ``CHUNK`` jobs per transaction (each with its events and
        edges); what a failing transaction did not write stays pending, older rows first."""
        run = rows.run_row(self.run_id)
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

    def _row(self, job_id: str) -> List[Any]:
        row = self._rows.get(job_id)
        if row is None:
            row = self._rows[job_id] = rows.new_row(job_id, self.run_id)
        return row

    def _take(self, item: Tuple[Any, ...], STATUS: int = rows.STATUS, UPDATED_AT: int = rows.UPDATED_AT,
              names: Dict[Any, str] = _STATUS) -> None:
        """Fold one transition into the rows to write (the costly columns, where the job
        ran and its runtime info, are made once per job and batch, in ``_details``)."""
        t, jid, kind = item[0], item[1], item[2]
        row = self._rows.get(jid)
        if row is None:
            row = self._rows[jid] = rows.new_row(jid, self.run_id)
        status = names[item[3]]
        if kind is _CREATED:
            self._created(row, item, t)
            prev = "created"
        else:
            prev = names[item[4]]
            if kind is _ENDED:
                self._ended(row, item, t)
            elif status == "running":
                self._waiting.pop(jid, None)
                row[rows.STARTED_AT] = t
                self._detail[jid] = (item[5], item[6])
            elif status == "queued":
                self._waiting[jid] = (item[5], status, None)
        if status != prev:
            self._event(jid, status, t)
        row[STATUS] = status
        row[UPDATED_AT] = t

    def _ended(self, row: List[Any], item: Tuple[Any, ...], t: float) -> None:
        _, jid, _, _, _, info, extra, error, from_cache, job_hash = item
        if self._waiting:
            self._waiting.pop(jid, None)
        row[rows.ENDED_AT] = t
        row[rows.CACHED] = 1 if from_cache else 0
        if error is not None:
            row[rows.ERROR_TYPE], row[rows.ERROR_MESSAGE], row[rows.TRACEBACK] = rows.error_cols(error)
        row[rows.JOB_HASH] = job_hash
        self._detail[jid] = (info, extra)
        self._ended_ids.append(jid)

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

    def _created(self, row: List[Any], item: Tuple[Any, ...], t: float) -> None:
        _, jid, _, new_status, function, handler, container, kwargs, inputs, info = item
        self._events.append((jid, "created", t))
        row[rows.FUNCTION_NAME], row[rows.FUNCTION_VERSION] = function.name, function.version
        row[rows.HANDLER] = type(handler).__name__
        row[rows.CREATED_AT] = t
        row[rows.ARGS_SUMMARY] = kwargs if isinstance(kwargs, str) else rows.args_summary(kwargs)
        row[rows.BATCH] = rows.batch_of(None, handler, container)
        if inputs:
            self._edges.extend((jid, d) for d in inputs)
        if new_status is JobStatus.QUEUED:
            self._waiting[jid] = (info, "queued", None)

    def _details(self) -> None:
        """Where each job that started or ended in this batch ran, and its runtime info as
        it is now (the handler's report merged)."""
        get = self._rows.get
        host_name, info_dict, batch_of, runtime_json = rows.HOST_NAME, rows.info_dict, rows.batch_of, rows.runtime_json
        HOST, PID, BATCH, RUNTIME_INFO = rows.HOST, rows.PID, rows.BATCH, rows.RUNTIME_INFO
        for jid, (info, extra) in self._detail.items():
            row = get(jid)
            if row is None:
                continue
            if extra is not None:
                info = {**info, **info_dict(extra)}
            pid = info.get("pid")
            row[HOST] = str(info.get("host") or host_name)
            row[PID] = pid if type(pid) is int else None
            batch = batch_of(info, None, None)
            if batch is not None:
                row[BATCH] = batch
            row[RUNTIME_INFO] = runtime_json(info)
        self._detail.clear()

    def _look_at_reasons(self, now: float) -> None:
        """Queued jobs whose pending reason changed (a handler merges it into their runtime
        info without a transition) get it written."""
        for jid, (info, status, seen) in list(self._waiting.items()):
            reason = info.get("pending_reason")
            if reason != seen:
                self._waiting[jid] = (info, status, reason)
                row = self._row(jid)
                rows.set_cols(row, status=status, pending_reason=str(reason) if reason else None,
                              updated_at=now)

    # ------------------------------------------------------------------ the end
    def close(self, timeout: float = EXIT_WAIT) -> None:
        """Write what is queued and stop the thread, waiting at most ``timeout`` seconds."""
        self._exit_wait = max(0.0, timeout - 0.1)  # the last writes' retries, inside the join
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


_lock = threading.Lock()
_current: Optional[Recorder] = None
_orphans: List[Recorder] = []  # a forked child's copies of its parent's recorder: never used


def _start(job: Any, event: Any, old: Any, new: Any, info: Dict[str, Any], inputs: List[Any]) -> None:
    """``put`` until the first job: start recording (or not) as the environment says."""
    global put, _current
    with _lock:
        if put is _start:
            if recording_enabled():
                _current = Recorder(default_log_path(), keep_days(), RUN_ID, old)
                put = _current.put
            else:
                put = None
    p = put
    if p is not None:
        p(job, event, old, new, info, inputs)


#: what the job shell calls at each transition; None: recording is off
put: Optional[Put] = _start


def current() -> Optional[Recorder]:
    """The running recorder, if any."""
    return _current


def reset() -> None:
    """Write and stop the current recorder; the next job reads the environment again
    (tests, and a program that changes ``HITHER_MONITOR_DB``)."""
    global put, _current
    with _lock:
        rec, _current = _current, None
        put = _start
    if rec is not None:
        rec.close(timeout=5.0)


def _at_exit() -> None:
    rec = _current
    if rec is not None:
        rec.close(EXIT_WAIT)


def _after_fork_in_child() -> None:
    global put, _current, RUN_ID, _lock
    RUN_ID = os.urandom(6).hex()
    _lock = threading.Lock()
    put = _start
    if _current is not None:
        _orphans.append(_current)  # its connection belongs to the parent: never touch it
        # SQLite keeps per-process lock state in memory that a fork copies: a connection
        # the child opened to the log its parent has open would lock it wrongly (and could
        # corrupt it), so a child of a recording program does not record
        put = None
    _current = None


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
