"""Processes of a test: whether a pid still runs, and waiting for the file a job writes (its
pids, say) and for processes to end.

For handler tests that check what a job, a cancel or a kill leaves behind. ``alive`` reads
``/proc`` (Linux); elsewhere it asks ``os.kill(pid, 0)``, to which a zombie still exists.
"""
from __future__ import annotations

import os
import time
from typing import Iterable, List

from hither.runtime.processes import pid_exists


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (dead, waiting for its parent to reap it) does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        # no such process, or no /proc on this system
        return not os.path.isdir("/proc/self") and pid_exists(pid)
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids: Iterable[int], seconds: float = 15.0) -> bool:
    """Whether every one of ``pids`` has ended within ``seconds`` (polled; False if not)."""
    pids = list(pids)
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """The text of the file at ``path`` once it exists (empty or not); fails the test
    (``AssertionError``) when it has not appeared within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)
    with open(path) as f:
        return f.read()


def wait_for_pids(path: str, timeout: float = 60.0, count: int = 1) -> List[int]:
    """The pids (whitespace-separated numbers) in the file at ``path`` once it holds ``count``
    of them or more (jobs that each append theirs, say); fails the test when it does not
    within ``timeout`` seconds. Write the file with ``os.replace``, or with one small write
    per pid, so that no pid is read half-written."""
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with open(path) as f:
                pids = [int(p) for p in f.read().split()]
            if len(pids) >= count:
                return pids
        assert time.monotonic() < deadline, f"{path} got fewer than {count} pid(s) within {timeout} s"
        time.sleep(0.02)
