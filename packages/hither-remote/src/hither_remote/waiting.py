"""Jobs a serving process claimed (``Claimed``); those not started yet: their short lease,
and how many of them go back to idle peers of the same resource id.

A serving process claims a little ahead of its free workers (``ComputeResource.prefetch``)
so that the next jobs are unpacked while others run. Such a job holds only a short lease
(``wait_lease``, renewed every third of it) until it starts, then the full
``lease_seconds``: when the process is killed, its waiting jobs go to another process after
that short lease, not a full one. And while a live peer of the same resource id has free
workers (its heartbeat says so), the process hands back the waiting jobs it cannot start
now (``to_give``), and the peer claims them from the change stream::

    lease = wait_lease(30.0)                                  # 10.0
    n = to_give(waiting=2, started=2, capacity=2, room=1)     # 1
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Iterable, List, Optional

from .models import BusJob, ResourceHeartbeat

#: the longest lease of a claimed job that has not started (seconds)
MAX_WAIT_LEASE = 10.0


def wait_lease(lease_seconds: float) -> float:
    """The lease of a claimed job until it starts: a third of ``lease_seconds``, at least
    1 s (never more than ``lease_seconds``), at most ``MAX_WAIT_LEASE``."""
    return min(lease_seconds, MAX_WAIT_LEASE, max(lease_seconds / 3, 1.0))


def peer_room(records: Iterable[ResourceHeartbeat], owner: str, since: float) -> int:
    """Free workers of the live serving processes other than ``owner`` (heartbeat after
    ``since``, not stopped): a peer's ``running`` counts the jobs it holds, waiting ones too."""
    return sum(max(0, h.capacity - h.running) for h in records
               if h.owner != owner and not h.stopped and h.last_seen >= since)


def to_give(waiting: int, started: int, capacity: int, room: int) -> int:
    """How many of a process's ``waiting`` jobs go back for idle peers: those its own free
    workers (``capacity - started``) will not start now, at most the peers' ``room``."""
    return max(0, min(room, waiting - max(0, capacity - started)))


class Claimed:
    """What a serving process knows of a job it claimed, from the claim to its end."""

    def __init__(self, bus_job: BusJob) -> None:
        self.bus_job = bus_job
        self.job_dir: Optional[str] = None
        self.cancelled = False
        self.refusal: Optional[str] = None  # why it must not run (checked when claimed)
        self.checked = False  # its run record was taken (or found taken) at the claim
        #: None: run it; "": a run of it ended (a replay); else the owner of a run still going
        self.other_run: Optional[str] = None
        self.thread: Optional[threading.Thread] = None
        self.started = False  # it took one of the resource's worker slots
        self.freed = False  # its process ended: the slot is free again
        self.in_flight = False  # its process runs or its outcome is being packed
        self.give_back = False  # handed back for an idle peer before it started
        self.seq = 0  # its place in the order of claims (``StartGate`` starts jobs in it)


class StartGate:
    """At most ``workers`` jobs started at once, waiting jobs started in the order they were
    claimed (a semaphore wakes its waiters in no order: a job claimed later could start
    first and the older one wait behind it)::

        gate = StartGate(2)
        claimed.seq = gate.number()                     # at the claim
        if gate.enter(claimed, give_up=lambda: claimed.give_back, start=lambda: True):
            try: ...                                    # run it
            finally: gate.leave()
    """

    def __init__(self, workers: int) -> None:
        self._free = workers
        self._waiting: List[int] = []
        self._cond = threading.Condition()
        self._numbers = itertools.count(1)

    def number(self) -> int:
        """The next place in the order of claims."""
        return next(self._numbers)

    def enter(self, r: Claimed, give_up: Callable[[], bool], start: Callable[[], bool]) -> bool:
        """Wait until a worker is free and no job claimed before ``r`` waits, then
        ``start()`` (under the caller's lock: False keeps the worker free); False as soon
        as ``give_up()`` says so."""
        with self._cond:
            self._waiting.append(r.seq)
            try:
                while not give_up():
                    if self._free > 0 and r.seq == min(self._waiting):
                        if not start():
                            return False
                        self._free -= 1
                        return True
                    self._cond.wait(0.1)
                return False
            finally:
                self._waiting.remove(r.seq)
                self._cond.notify_all()

    def leave(self) -> None:
        """A started job ended: its worker is free."""
        with self._cond:
            self._free += 1
            self._cond.notify_all()
