"""``ChangeWatcher``: wakes a waiting loop when the job bus changes (a MongoDB change stream).

Both sides of the bus wait on a ``threading.Event`` instead of polling on a fast timer:
the resource for jobs inserted for it, handed back, or asked to cancel; the client for its
jobs reaching a final status. The watcher follows ``collection.watch(pipeline)`` in a
thread and calls ``on_change(change)`` per event. When the stream breaks (an outage) it
calls ``on_gap()`` (events may have been lost: the caller looks at the bus once) and opens
it again. A server without change streams (a standalone mongod raises
``OperationFailure``) makes ``supported`` False: the caller falls back to polling::

    w = ChangeWatcher(bus.jobs, [{"$match": {"operationType": "insert"}}],
                      on_change=lambda ch: wake.set(), on_gap=wake.set, name="resource")
    w.start()
    ...
    if not w.watching:      # not (yet) following the stream: poll
        ...
    w.stop()
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional

logger = logging.getLogger("hither_remote.wakeups")

#: seconds the server holds each read of the stream open: how soon ``stop()`` is noticed
AWAIT_MS = 500
#: seconds a watcher pauses after a read of the stream that the server answered early with
#: nothing: SecantusDB answers every waiting read at each write to the server, matching the
#: pipeline or not, so without a pause each write costs every watcher a round trip. Events
#: of the pause come with the next read (at most this much later): one read covers them all.
EMPTY_GAP = 0.01
#: the pause doubles after each such empty answer in a row, up to this (a busy server: its
#: writes would cost each watcher a round trip each), and is back at ``EMPTY_GAP`` after
#: an event or a read that waited its full time
MAX_EMPTY_GAP = 0.05
#: a watcher whose ``gather()`` says so (the client's, while it waits for many jobs) pauses
#: this long after each batch of events before its next read, so that the read brings
#: several jobs' events rather than one (each read is a round trip the bus server pays
#: for); the events of the pause come at most this much later
GATHER = 0.02


class ChangeWatcher:
    """Follows ``collection``'s change stream filtered by ``pipeline`` (see the module docstring)."""

    def __init__(self, collection: Any, pipeline: List[Dict[str, Any]], on_change: Callable[[Dict[str, Any]], None],
                 on_gap: Callable[[], None], name: str = "bus",
                 gather: Optional[Callable[[], bool]] = None) -> None:
        self.collection, self.pipeline = collection, pipeline
        self.on_change, self.on_gap, self.name = on_change, on_gap, name
        self.gather = gather
        #: False once the server said it has no change streams (then: poll)
        self.supported = True
        #: True while the stream is open (events arrive)
        self.watching = False
        self._stop = threading.Event()
        self._opened = threading.Event()  # the first open succeeded or failed
        self._thread: Optional[threading.Thread] = None

    def start(self, wait: float = 5.0) -> "ChangeWatcher":
        """Start following the stream; wait up to ``wait`` s for it to open (or be refused)."""
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"hither-remote-watch-{self.name}")
        self._thread.start()
        self._opened.wait(wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            # a thread still opening the stream of an unreachable bus waits out pymongo's
            # server selection: not worth holding a stop up for (a daemon, it ends then)
            self._thread.join(AWAIT_MS / 1000 + 2 if self.watching else 0.1)

    def _run(self) -> None:
        import pymongo.errors

        from .outage import FIRST_WAIT, MAX_WAIT, describe

        ever_opened = False
        delay = FIRST_WAIT  # grows while the stream cannot be opened
        while not self._stop.is_set():
            try:
                with self.collection.watch(self.pipeline, max_await_time_ms=AWAIT_MS) as stream:
                    self.watching = ever_opened = True
                    delay = FIRST_WAIT
                    self._opened.set()
                    self.on_gap()  # what changed before the stream opened: look once
                    gap = EMPTY_GAP
                    while not self._stop.is_set():
                        t0 = time.monotonic()
                        change = stream.try_next()
                        if change is not None:
                            self.on_change(change)
                            gap = EMPTY_GAP
                            if self.gather is not None and not _buffered(stream) and self.gather():
                                self._stop.wait(GATHER)  # the batch ran out: let events gather
                        elif EMPTY_GAP > 0 and time.monotonic() - t0 < AWAIT_MS / 2000:
                            self._stop.wait(gap)  # woken for another write: let events gather
                            gap = min(MAX_EMPTY_GAP, gap * 2)
                        else:
                            gap = EMPTY_GAP
            except pymongo.errors.OperationFailure as exc:
                self.watching = False
                if not ever_opened:
                    self.supported = False
                    self._opened.set()
                    logger.info("the bus server has no change streams (%s); polling instead", exc)
                    return
                logger.warning("the bus change stream failed (%s); opening it again", exc)
                self.on_gap()
                self._stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - an outage: the callers poll meanwhile
                self.watching = False
                self._opened.set()  # the caller polls until the stream opens
                if self._stop.is_set():
                    break  # stopped meanwhile (its client closed, maybe): nothing to report
                # the first failure in a row is news; the next ones are the outage its owner reports
                logger.log(logging.WARNING if delay == FIRST_WAIT else logging.DEBUG,
                           "the bus change stream broke (%s); opening it again in %.0f s", describe(exc), delay)
                self.on_gap()
                self._stop.wait(delay)
                delay = min(MAX_WAIT, delay * 2)
        self.watching = False


def _buffered(stream: Any) -> bool:
    """Whether ``stream`` holds more events of its last batch (its next ``try_next`` makes no
    round trip); True when this pymongo does not say (then a watcher never pauses for it)."""
    has_next = getattr(getattr(stream, "_cursor", None), "_has_next", None)
    try:
        return True if has_next is None else bool(has_next())
    except Exception:  # noqa: BLE001 - a private pymongo detail: never fail a watcher for it
        return True


def resource_pipeline(resource_id: str) -> List[Dict[str, Any]]:
    """The change events a resource of ``resource_id`` wakes for: jobs inserted for it,
    jobs handed back to the queue (set ``queued``) or asked to cancel."""
    from .models import BusStatus

    return [{"$match": {"$or": [
        {"operationType": "insert", "fullDocument.resource_id": resource_id},
        {"operationType": "update", "updateDescription.updatedFields.status": {
            "$in": [BusStatus.QUEUED.value, BusStatus.CANCEL_REQUESTED.value]}}]}}]


def changed(change: Dict[str, Any]) -> "tuple[Any, Optional[str]]":
    """The job id of a change event and the status it set (None: not a status change)."""
    status = ((change.get("updateDescription") or {}).get("updatedFields") or {}).get("status")
    return (change.get("documentKey") or {}).get("_id"), status
