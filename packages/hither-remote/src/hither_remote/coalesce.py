"""``Coalescer``: one thread that sends the per-job bus writes of jobs starting or ending at
about the same time as one bulk request.

A resource runs each job from a thread of its own, and each would make its own round trip
to MongoDB for its run record and its outcome. A ``Coalescer`` collects the items its
callers hand it while a bulk request is on its way and sends them together in the next
one; each caller waits for its own result, so a job's outcome is on the bus before the job
counts as ended, and a failure reaches every caller of that batch::

    starts = Coalescer(lambda ids: bus.start_runs(ids, owner), name="hither-remote-starts")
    fresh = starts.call(job_id)      # blocks until its batch is written: False for a replay
    starts.close()                   # later calls run on the caller's thread

With ``gather=(seconds, more_coming)`` the thread, once an item is in, waits up to
``seconds`` for more while ``more_coming()`` says others are on their way (the resource:
jobs still running, whose ends will follow), so that jobs ending a few milliseconds apart
share one write; a lone item (``more_coming()`` False) is sent at once.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, List, Optional, Tuple, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Pending:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None


class Coalescer(Generic[T, R]):
    """``call(item)`` returns ``fn([... item ...])[i]`` for its item, ``fn`` being called
    from one thread with every item handed in meanwhile (at most ``max_batch``); ``fn``
    returns one result per item, in order, or raises for the whole batch."""

    def __init__(self, fn: Callable[[List[T]], List[R]], name: str, max_batch: int = 200,
                 gather: Optional[Tuple[float, Callable[[], bool]]] = None) -> None:
        self._fn = fn
        self._gather = gather
        self.name = name
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: List[_Pending] = []
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def call(self, item: T) -> R:
        p = _Pending(item)
        if not self._enqueue(p):
            return self._fn([item])[0]
        p.done.wait()
        if p.error is not None:
            raise p.error
        return p.result

    def _enqueue(self, p: _Pending) -> bool:
        with self._cond:
            if self._closed:
                return False
            self._queue.append(p)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        return True

    def close(self, timeout: float = 90.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _wait_for_more(self) -> None:
        """(Under the lock, an item queued) wait up to the gather time while more are coming."""
        if self._gather is None:
            return
        seconds, more_coming = self._gather
        deadline = time.monotonic() + seconds
        while not self._closed and len(self._queue) < self.max_batch and more_coming():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                self._wait_for_more()
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            try:
                results = self._fn([p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
                for p, r in zip(batch, results):
                    p.result = r
            except BaseException as exc:  # noqa: BLE001 - every caller of the batch sees it
                for p in batch:
                    p.error = exc
            for p in batch:
                p.done.set()
