"""``Janitor``: removes finished job directories in a thread of its own, so that removing
one (milliseconds of ``rmdir`` on some file systems) does not hold up the next job::

    janitor = Janitor()
    janitor.remove(job_dir)     # returns at once
    janitor.close()             # removes what is left, then stops
"""
from __future__ import annotations

import queue
import shutil
import threading
from typing import Optional


class Janitor:
    """Removes folders given to ``remove`` in a background thread (started on first use)."""

    def __init__(self) -> None:
        self._q: "queue.SimpleQueue[Optional[str]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def remove(self, path: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="hither-remote-janitor")
                self._thread.start()
        self._q.put(path)

    def close(self, timeout: float = 30.0) -> None:
        """Remove every folder given so far, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._q.put(None)
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            path = self._q.get()
            if path is None:
                return
            shutil.rmtree(path, ignore_errors=True)
