"""The recorder: each job transition is queued on the caller's thread as one small tuple
(``put``); one daemon thread turns them into plain transitions and hands them, in batches,
to the event log's writer process (``hither.events.sidecar``), which folds them into rows
and writes them. The program's GIL pays for the queueing and the conversion only; rows,
JSON and SQLite run in the writer process, on another core.

The job shell (``hither.jobs.job.Job.apply``) calls ``put(job, event, old, new, info,
inputs)`` after every transition that changed the job's state record, when ``put`` is not
None (``info``: the job's runtime info dict; ``inputs``: its list of input jobs). ``put``
starts as :func:`_start`, which reads the environment at the first job: with
``HITHER_MONITOR=0`` it becomes None (no thread, no queue, nothing per job); else a
:class:`Recorder` starts and ``put`` becomes its ``put``, which queues one tuple. A log that
cannot be written costs one warning; recording then stops (read-only, corrupt, not a file)
or retries at the next batch (locked, full), and a job never waits for the log nor sees its
errors. Where no writer process can start (no ``sys.executable``, or
``HITHER_MONITOR_WRITER=thread``) the thread writes the log itself.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from hither.events import rows, sidecar
from hither.events.folder import INTERVAL, LogFolder
from hither.events.log import default_log_path, keep_days, recording_enabled
from hither.events.store import LogUnavailable
from hither.status import JobStatus

logger = logging.getLogger("hither.events")

#: this program's id in the log; a job's id is ``<RUN_ID>-<n>`` (a forked child gets its own)
RUN_ID = os.urandom(6).hex()

DRAIN_EVERY = 0.005     # seconds between two looks at the queue while jobs come in
EXIT_WAIT = 1.0         # seconds the exit waits for the last batch
REASON_EVERY = 1.0      # seconds between two looks at queued jobs' pending reasons
WRITER_ENV = "HITHER_MONITOR_WRITER"  # "thread": write the log on the recorder's thread

Put = Callable[[Any, Any, Any, Any, Dict[str, Any], List[Any]], None]
Messages = List[Tuple[str, str]]
#: the only environment the writer process gets (SQLite's temporary files, text encoding)
_WRITER_ENV = ("TMPDIR", "SQLITE_TMPDIR", "LANG", "LC_ALL", "LC_CTYPE")
_NO_ERROR = (None, None, None)
_CREATED, _MOVED, _ENDED = "created", "moved", "ended"  # kinds of queued transitions
_STATUS = {s: ("created" if s is JobStatus.PENDING else s.value) for s in JobStatus}


class _Process:
    """The writer process, fed through a pipe; it tells back on another."""

    def __init__(self, config: Tuple[Any, ...]) -> None:
        import subprocess
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the hither folder
        if not sys.executable:
            raise OSError("no Python executable to run the event log's writer")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", sidecar.BOOT, here], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, close_fds=True,
            start_new_session=True, cwd="/",  # its own session: a Ctrl-C leaves it to write the rest
            env={k: v for k, v in os.environ.items() if k in _WRITER_ENV})  # none of the program's secrets
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        os.set_blocking(self._out.fileno(), False)
        self._partial = b""
        self.send_frame(config)

    def send_frame(self, payload: Any) -> None:
        data = memoryview(sidecar.frame(payload))
        fd = self._in.fileno()
        while data:
            data = data[os.write(fd, data):]

    def send(self, items: List[Tuple[Any, ...]], busy: bool) -> None:
        try:
            self.send_frame(items)
        except ValueError:  # a value marshal does not take (in runtime info): made plain
            self.send_frame([tuple([rows.plain_info(v) if type(v) is dict else rows.plain(v) for v in item])
                             for item in items])

    def tick(self, now: float, busy: bool) -> Messages:
        return self._messages()

    def _messages(self) -> Messages:
        try:
            data = os.read(self._out.fileno(), 65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            raise _Ended(self.proc)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [(line[:1].decode(), line[2:].decode("utf-8", "replace")) for line in lines if line]

    def close(self, timeout: float) -> Messages:
        """Close its input (it writes the rest and ends); wait at most ``timeout`` seconds."""
        import select
        try:
            self.send_frame(max(0.0, timeout - 0.1))  # how long it may retry a locked log
        except OSError:
            pass
        self.close_pipes(out=False)
        deadline = time.monotonic() + timeout
        got: Messages = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            select.select([self._out], [], [], left)
            try:
                got += self._messages()
            except _Ended:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
                self.close_pipes(out=True)
                return got

    def last_words(self, timeout: float = 2.0) -> Optional[str]:
        """The reason the writer gave for stopping (its ``S`` line), read until its output
        ends (at most ``timeout`` seconds), or None."""
        import select
        deadline = time.monotonic() + timeout
        got: Messages = []
        try:
            while time.monotonic() < deadline:
                select.select([self._out], [], [], max(0.0, deadline - time.monotonic()))
                got += self._messages()
        except (_Ended, OSError, ValueError):
            pass
        return next((m for kind, m in got if kind == "S"), None)

    def close_pipes(self, out: bool = True) -> None:
        for f in (self._in, self._out) if out else (self._in,):
            try:
                f.close()
            except OSError:
                pass


class _Thread:
    """The log written on the recorder's own thread (no writer process)."""

    def __init__(self, config: Tuple[Any, ...]) -> None:
        path, keep, run, self._exit_wait = config
        self._said: Messages = []
        self.folder = LogFolder(Path(path), keep, run, warn=lambda m: self._said.append(("W", m)))
        self._next_write = time.monotonic() + INTERVAL
        self.folder.tick(time.time())  # a prune that is due

    def send(self, items: List[Tuple[Any, ...]], busy: bool) -> None:
        self.folder.feed(items)

    def tick(self, now: float, busy: bool) -> Messages:
        if not busy or time.monotonic() >= self._next_write:
            self.folder.tick(now)
            self._next_write = time.monotonic() + INTERVAL
        said, self._said = self._said, []
        return said

    def close(self, timeout: float) -> Messages:
        deadline = time.monotonic() + timeout
        try:
            self.folder.tick(time.time(), last=True)
            while self.folder.pending() and time.monotonic() < deadline:  # another program's lock
                time.sleep(0.02)
                self.folder.tick(time.time(), last=True)
            if self.folder.pending():
                self._said.append(("W", f"hither could not record the last {self.folder.pending()} jobs "
                                        f"to {self.folder.path} (it was locked or full at exit)"))
        finally:
            self.folder.close()
        return self._said

    def last_words(self) -> Optional[str]:
        return None

    def close_pipes(self) -> None:
        pass


def _leave_signals_to_the_main_thread() -> None:
    """Block the program's asynchronous signals in this thread, so that the kernel hands them
    to the main thread, whose blocking call (a ``time.sleep``, a ``recv``) they interrupt at
    once: taken here they would only be noted, and a Ctrl-C wait until that call returned."""
    import signal
    if hasattr(signal, "pthread_sigmask"):
        # the signals a program may act on (Python runs their handlers in the main thread only)
        names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGWINCH")
        signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, n) for n in names if hasattr(signal, n)})


class _Ended(Exception):
    """The writer process ended."""

    def __init__(self, proc: Any) -> None:
        super().__init__(proc)
        self.proc = proc


class _Stopped(Exception):
    """Recording stops, for the reason given."""


class Recorder:
    """The queue of transitions, the thread that converts them, and where they go (the
    writer process) for the log at ``path`` (``first``: a job state record, whose class
    gives the step values)."""

    def __init__(self, path: Path, keep: float, run_id: str, first: Any) -> None:
        self.run_id = run_id
        self.path = path
        self._keep = keep
        self._q: Deque[Tuple[Any, ...]] = collections.deque()
        self._waiting: Dict[str, Tuple[Dict[str, Any], str, Any]] = {}  # queued: info, status, reason
        self._next_reasons = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._exit_wait = EXIT_WAIT - 0.1
        self._warned = False
        self._sink: Any = None
        self.forwarded = 0  # transitions handed to the writer so far
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
    def _open(self) -> Any:
        config = (str(self.path), self._keep, rows.run_row(self.run_id), self._exit_wait)
        if os.environ.get(WRITER_ENV, "").strip().lower() != "thread":
            try:
                return _Process(config)
            except OSError as exc:
                logger.debug("no writer process for the job event log (%s): the recorder's thread writes it", exc)
        return _Thread(config)

    def _loop(self) -> None:
        sink = None
        try:
            sink = self._sink = self._open()
            _leave_signals_to_the_main_thread()  # after the writer's start: it must not inherit the mask
            busy = False
            while not self._stopping:
                if self._wake.wait(DRAIN_EVERY if busy else INTERVAL) and not self._stopping:
                    self._wake.clear()  # a nudge (write now), not a stop
                busy = self._forward(sink, busy)
                now = time.time()
                if self._waiting and now >= self._next_reasons:
                    self._next_reasons = now + REASON_EVERY
                    self._reasons(sink, now)
                self._told(sink.tick(now, busy))
            self._forward(sink, False)
            self._told(sink.close(self._exit_wait))
        except _Stopped as exc:
            self._give_up(str(exc))
        except LogUnavailable as exc:
            self._give_up(f"hither stops recording jobs to {self.path}: {exc} (set HITHER_MONITOR_DB "
                          "to a writable file, or HITHER_MONITOR=0 to turn this off)")
        except (_Ended, BrokenPipeError):  # its last words (why it stopped) may still be unread
            said = sink.last_words() if sink is not None else None
            self._give_up(said or f"hither stops recording jobs to {self.path}: its writer process ended "
                                  f"({WRITER_ENV}=thread writes the log from the program instead)")
        except Exception as exc:  # never let the recorder take anything down
            self._give_up(f"hither stops recording jobs to {self.path}: internal error: "
                          f"{type(exc).__name__}: {exc}")
            logger.debug("the job event recorder stopped", exc_info=True)
        finally:
            if sink is not None:
                sink.close_pipes()

    def _told(self, messages: Messages) -> None:
        for kind, message in messages:
            if kind == "S":
                raise _Stopped(message)
            self._warn(message)

    def _give_up(self, why: str) -> None:
        global put
        if put == self.put:
            put = None
        self._q.clear()
        self._warn(why)

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message)

    def _forward(self, sink: Any, busy: bool, names: Dict[Any, str] = _STATUS, QUEUED: Any = JobStatus.QUEUED) -> bool:
        """Turn what was queued into plain transitions (``hither.events.folder``'s items)
        and hand them on, letting go of the jobs at once (a job kept alive for long by the
        queue survives into the garbage collector's older generations, and the program's
        full collections grow); False if nothing was queued. A start gets a copy of its
        job's runtime info only when the job has not ended by now."""
        q = self._q
        if not q:
            return False
        items: List[Tuple[Any, ...]] = []
        add, pop = items.append, q.popleft
        waiting = self._waiting
        started: Dict[str, Tuple[int, Dict[str, Any], Any]] = {}
        args_summary, batch_of, error_cols, quick = rows.args_summary, rows.batch_of, rows.error_cols, rows.quick_info
        for _ in range(len(q)):
            it = pop()
            kind = it[2]
            if kind is _ENDED:
                t, jid, _, st, old, info, extra, error, from_cache, job_hash = it
                if waiting:
                    waiting.pop(jid, None)
                if started:
                    started.pop(jid, None)
                add(("e", t, jid, names[st], names[old], *(_NO_ERROR if error is None else error_cols(error)),
                     1 if from_cache else 0, job_hash, quick(info, extra)))
            elif kind is _CREATED:
                t, jid, _, st, fn, handler, container, kwargs, inputs, info = it
                add(("c", t, jid, names[st], fn.name, fn.version, type(handler).__name__,
                     batch_of(None, handler, container), kwargs if type(kwargs) is str else args_summary(kwargs),
                     inputs))
                if st is QUEUED:
                    waiting[jid] = (info, "queued", None)
            else:
                t, jid, _, st, old, info, extra = it
                status = names[st]
                if status == "running":
                    if waiting:
                        waiting.pop(jid, None)
                    started[jid] = (len(items), info, extra)
                    add(("s", t, jid, status, names[old]))
                else:
                    add(("m", t, jid, status, names[old]))
                    if status == "queued":
                        waiting[jid] = (info, "queued", None)
        for at, info, extra in started.values():  # still running: where, and its info so far
            items[at] = (*items[at], quick(info, extra))
        sink.send(items, busy)
        self.forwarded += len(items)
        return True

    def _reasons(self, sink: Any, now: float) -> None:
        """Queued jobs whose pending reason changed (a handler merges it into their runtime
        info without a transition) get it written."""
        items = []
        for jid, (info, status, seen) in list(self._waiting.items()):
            reason = info.get("pending_reason")
            if reason != seen:
                self._waiting[jid] = (info, status, reason)
                items.append(("r", now, jid, status, str(reason) if reason else None))
        if items:
            sink.send(items, False)

    # ------------------------------------------------------------------ the end
    def close(self, timeout: float = EXIT_WAIT) -> None:
        """Write what is queued and stop the thread, waiting at most ``timeout`` seconds."""
        self._exit_wait = max(0.0, timeout - 0.1)  # the last writes' retries, inside the join
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive() and self._sink is not None:  # stuck handing a batch over
                self._warn(f"hither could not hand the last jobs to the writer of {self.path} within "
                           f"{timeout:g} s (it is stopped or far behind): they are not recorded "
                           f"({len(self._q)} transitions still queued, and the batch being sent)")


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
        sink = _current._sink  # noqa: SLF001 - the child lets go of the parent's writer process
        if sink is not None:
            sink.close_pipes()
        # SQLite keeps per-process lock state in memory that a fork copies: a connection
        # the child opened to the log its parent has open would lock it wrongly (and could
        # corrupt it), so a child of a recording program does not record
        put = None
    _current = None


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
