"""One timer thread for every delayed call of the job manager (the backoff before a retry).

A heap of (due time, call) and one daemon thread that sleeps until the earliest is due:
thousands of jobs waiting to be retried cost heap entries, not threads.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

logger = logging.getLogger("hither.jobs.timer")


class Timer:
    """Calls ``fn()`` after ``delay`` seconds (``call_later``), on its own thread, in due order."""

    def __init__(self, name: str = "hither-timer") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), fn))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        """How many calls are waiting."""
        with self._cond:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        # idle: end the thread after a while (call_later starts a new one)
                        if not self._cond.wait(30.0) and not self._heap:
                            self._thread = None
                            return
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        _due, _n, fn = heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            try:
                fn()
            except Exception:  # one failing call must not stop the others
                logger.exception("hither internal error in a delayed call")
