"""The recorder: each job transition is queued on the caller's thread as one small tuple
(``hook``); one daemon thread turns them into rows and writes them in batches.

The job shell (``hither.jobs.job.Job.apply``) calls ``hook(job, event, old, new, info)``
after every transition that changed the job's state record, when ``hook`` is not None.
``hook`` starts as :func:`_start`, which reads the environment at the first job: with
``HITHER_MONITOR=0`` it becomes None (no thread, no queue, nothing per job); else a
:class:`Recorder` starts and ``hook`` becomes its ``record``. A log that cannot be written
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
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from hither.events import rows
from hither.events.log import default_log_path, keep_days, recording_enabled
from hither.events.store import LogUnavailable, LogWriter

logger = logging.getLogger("hither.events")

#: this program's id in the log; a job's id is ``<RUN_ID>-<n>`` (a forked child gets its own)
RUN_ID = os.urandom(6).hex()

INTERVAL = 0.2          # seconds between two batches
CHUNK = 2000            # jobs per transaction at most (another program waits for our lock)
EXIT_WAIT = 1.0         # seconds the exit waits for the last batch
MAX_PENDING = 200_000   # jobs kept while the log cannot be written; beyond, they are dropped
REASON_EVERY = 1.0      # seconds between two looks at queued jobs' pending reasons
WARN_AFTER = 5.0        # seconds a log stays locked (or full) before the one warning

Hook = Callable[[Any, Any, Any, Any, Dict[str, Any]], None]
_STATUS = {"pending": "created"}  # JobStatus value -> the log's status (the rest are equal)


class Recorder:
    """The queue of transitions and the thread writing them to the log at ``path``."""

    def __init__(self, path: Path, keep: float, run_id: str) -> None:
        self.run_id = run_id
        self.path = path
        self._q: Deque[Tuple[Any, ...]] = collections.deque()
        self._writer = LogWriter(path, keep)
        self._rows: Dict[str, List[Any]] = {}     # job id -> its row, merged, not yet written
        self._events: List[Tuple[str, str, float]] = []
        self._edges: List[Tuple[str, str]] = []
        self._waiting: Dict[str, Tuple[Dict[str, Any], str, Any]] = {}  # queued: info, status, reason
        self._next_reasons = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._warned = False
        self._failing_since: Optional[float] = None  # the log is locked or full since
        self.dropped = 0
        self.record: Hook = self._make_record()
        self._thread = threading.Thread(target=self._loop, name="hither-events", daemon=True)
        self._thread.start()

    def _make_record(self) -> Hook:
        append = self._q.append
        now = time.time

        def record(job: Any, event: Any, old: Any, new: Any, info: Dict[str, Any]) -> None:
            if new.inputs and not old.inputs:  # submitted with input jobs: note them now
                append((now(), job, event, old, new, info, [d.id for d in job.dependencies]))
            else:
                append((now(), job, event, old, new, info))
        return record

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        try:
            self._writer.maybe_prune(time.time())
            while not self._stopping:
                self._wake.wait(INTERVAL)
                self._tick()
            self._tick()
        except LogUnavailable as exc:
            self._give_up(str(exc))
        except Exception as exc:  # never let the recorder take anything down
            self._give_up(f"internal error: {type(exc).__name__}: {exc}")
            logger.debug("the job event recorder stopped", exc_info=True)
        finally:
            self._writer.close()

    def _give_up(self, why: str) -> None:
        global hook
        if hook == self.record:
            hook = None
        self._q.clear()
        self._warn(f"hither stops recording jobs to {self.path}: {why} (set HITHER_MONITOR_DB "
                   "to a writable file, or HITHER_MONITOR=0 to turn this off)")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message)

    def _tick(self) -> None:
        """Turn what was queued into rows and write them (a locked or full log: later)."""
        q = self._q
        now = time.time()
        while q:
            self._take(q.popleft())
        if self._waiting and now >= self._next_reasons:
            self._next_reasons = now + REASON_EVERY
            self._look_at_reasons(now)
        if not self._rows and not self._events:
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
            if len(self._rows) > MAX_PENDING:
                self.dropped += len(self._rows)
                self._rows.clear()
                self._events.clear()
                self._edges.clear()
        if self._writer.keep_days > 0:
            self._writer.maybe_prune(now)

    def _flush(self) -> None:
        run = rows.run_row(self.run_id)
        items = list(self._rows.items())
        for start in range(0, max(len(items), 1), CHUNK):
            part = items[start:start + CHUNK]
            ids = {jid for jid, _ in part}
            last = start + CHUNK >= len(items)
            events = self._events if last else [e for e in self._events if e[0] in ids]
            edges = self._edges if last else [e for e in self._edges if e[0] in ids]
            self._writer.write(run, [r for _, r in part], events, edges)
            for jid in ids:
                del self._rows[jid]
            if last:
                self._events, self._edges = [], []
            else:
                self._events = [e for e in self._events if e[0] not in ids]
                self._edges = [e for e in self._edges if e[0] not in ids]

    def _row(self, job_id: str) -> List[Any]:
        row = self._rows.get(job_id)
        if row is None:
            row = self._rows[job_id] = rows.new_row(job_id, self.run_id)
        return row

    def _take(self, item: Tuple[Any, ...]) -> None:
        """Fold one transition into the rows to write."""
        t, job, event, old, new, info = item[:6]
        jid = job.id
        row = self._row(jid)
        if old.step.value == "new":
            prev = "created"
            self._created(row, job, t)
            if len(item) > 6:
                self._edges.extend((jid, d) for d in item[6])
        else:
            prev = _STATUS.get(old.status.value, old.status.value)
        status = _STATUS.get(new.status.value, new.status.value)
        if new.step.value == "done" and old.step.value != "done":
            self._ended(row, job, event, new, info, t)
        elif status == "running" and prev != "running":
            self._running(row, job, event, info, t)
        elif status == "queued":
            self._waiting[jid] = (info, status, None)
        if status != prev:
            self._events.append((jid, status, t))
        rows.set_cols(row, status=status, updated_at=t)

    def _created(self, row: List[Any], job: Any, t: float) -> None:
        self._events.append((row[0], "created", t))
        rows.set_cols(row, function_name=job.function_name, function_version=job.function_version,
                      handler=type(job.handler).__name__, created_at=t,
                      args_summary=rows.args_summary(job.kwargs))

    def _where(self, row: List[Any], job: Any, info: Dict[str, Any]) -> None:
        rows.set_cols(row, host=str(info.get("host") or rows.HOST),
                      pid=info.get("pid") if isinstance(info.get("pid"), int) else None,
                      batch=rows.batch_of(info, job), runtime_info=rows.runtime_json(info))

    def _running(self, row: List[Any], job: Any, event: Any, info: Dict[str, Any], t: float) -> None:
        self._waiting.pop(row[0], None)
        info = {**info, **rows.info_dict(getattr(event, "runtime_info", None))}
        rows.set_cols(row, started_at=t, pending_reason=info.get("pending_reason"))
        self._where(row, job, info)

    def _ended(self, row: List[Any], job: Any, event: Any, new: Any, info: Dict[str, Any],
               t: float) -> None:
        self._waiting.pop(row[0], None)
        info = {**info, **rows.info_dict(getattr(event, "runtime_info", None))}
        kind, message, tb = rows.error_cols(new.error)
        rows.set_cols(row, ended_at=t, cached=1 if new.from_cache else 0, error_type=kind,
                      error_message=message, traceback=tb, job_hash=getattr(job, "_hash", None))
        self._where(row, job, info)

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
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


_lock = threading.Lock()
_current: Optional[Recorder] = None
_orphans: List[Recorder] = []  # a forked child's copies of its parent's recorder: never used


def _start(job: Any, event: Any, old: Any, new: Any, info: Dict[str, Any]) -> None:
    """The hook until the first job: start recording (or not) as the environment says."""
    global hook, _current
    with _lock:
        if hook is _start:
            if recording_enabled():
                _current = Recorder(default_log_path(), keep_days(), RUN_ID)
                hook = _current.record
            else:
                hook = None
    h = hook
    if h is not None:
        h(job, event, old, new, info)


#: what the job shell calls at each transition; None: recording is off
hook: Optional[Hook] = _start


def current() -> Optional[Recorder]:
    """The running recorder, if any."""
    return _current


def reset() -> None:
    """Write and stop the current recorder; the next job reads the environment again
    (tests, and a program that changes ``HITHER_MONITOR_DB``)."""
    global hook, _current
    with _lock:
        rec, _current = _current, None
        hook = _start
    if rec is not None:
        rec.close(timeout=5.0)


def _at_exit() -> None:
    rec = _current
    if rec is not None:
        rec.close(EXIT_WAIT)


def _after_fork_in_child() -> None:
    global hook, _current, RUN_ID, _lock
    RUN_ID = os.urandom(6).hex()
    _lock = threading.Lock()
    if _current is not None:
        _orphans.append(_current)  # its connection belongs to the parent: never touch it
    _current = None
    hook = _start


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
