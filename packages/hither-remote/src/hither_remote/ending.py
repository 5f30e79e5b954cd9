"""``Ends``: how a compute resource writes the ends of its jobs: outcomes gathered into bulk
writes, then their run records marked done.

A job's outcome goes on the bus in one ``bulk_write`` with those of the jobs ending about
the same time (``coalesce.Coalescer``); while other jobs of the resource still run (their
ends will follow within milliseconds on a busy resource), it waits up to ``END_GATHER`` s
for them, so that a burst of short jobs costs the bus one write per few jobs rather than
one per job; a lone job's end is written at once. Only once an outcome is written is its
run record marked done (else a crash between the two would leave a job that can neither
end nor run again), and soon after (a replay finds it done): in the write of the next
claim round's run records (``take_ended``), else by the resource's loop (``flush``)::

    ends = Ends(bus, owner, wake)
    ends.flight(r, True)                     # its process runs: an end is coming
    written = ends.end(r, status, outcome)   # False: the lease had passed to another process
"""
from __future__ import annotations

import logging
import threading
from typing import List, Tuple

from .bus import Bus, retry
from .coalesce import Coalescer
from .models import BusOutcome, BusStatus
from .waiting import Claimed

logger = logging.getLogger("hither_remote.ending")

#: seconds an ended job's outcome waits for the ends of jobs still running, to share one write
END_GATHER = 0.02


class Ends:
    """The ends of one serving process's jobs (see the module docstring); ``wake`` is set
    after each write (a worker is free, run records wait to be marked done)."""

    def __init__(self, bus: Bus, owner: str, wake: threading.Event) -> None:
        self.bus = bus
        self.owner = owner
        self._wake = wake
        self._lock = threading.Lock()
        self._in_flight = 0  # jobs whose process runs or whose outcome is being packed
        self._ended_runs: List[str] = []  # ended jobs (outcome written) whose runs to mark done
        self._writes: "Coalescer[Tuple[str, BusStatus, BusOutcome], bool]" = Coalescer(
            self._write, name="hither-remote-ends", gather=(END_GATHER, lambda: self._in_flight > 0))

    def flight(self, r: Claimed, on: bool) -> None:
        """Count ``r`` among the jobs whose ends are coming (an end waits for them) or not."""
        with self._lock:
            if r.in_flight != on:
                r.in_flight = on
                self._in_flight += 1 if on else -1

    def end(self, r: Claimed, status: BusStatus, outcome: BusOutcome) -> bool:
        """Write a job's outcome (with the others ending meanwhile); its run is marked done
        after. False if the job's lease had passed to another process."""
        self.flight(r, False)
        return self._writes.call((r.bus_job.id, status, outcome))

    def _write(self, ends: "list[Tuple[str, BusStatus, BusOutcome]]") -> "list[bool]":
        written = retry(self.bus.finish_many, self.owner, ends)
        with self._lock:
            self._ended_runs += [e[0] for e in ends]
        self._wake.set()
        return written

    @property
    def pending(self) -> int:
        """How many ended runs wait to be marked done."""
        return len(self._ended_runs)

    def take_ended(self) -> List[str]:
        """The ended runs to mark done, for the caller's write (``put_back`` if it fails)."""
        with self._lock:
            ids, self._ended_runs = self._ended_runs, []
        return ids

    def put_back(self, ids: List[str]) -> None:
        with self._lock:
            self._ended_runs[:0] = ids

    def flush(self, through_outage: bool = False) -> None:
        """Mark done the runs of ended jobs that no claim round carried (a failure is
        raised, the ids kept for the next try; ``through_outage``: retried, at the stop)."""
        ids = self.take_ended()
        try:
            if through_outage:
                retry(self.bus.end_runs, ids)
            else:
                self.bus.end_runs(ids)
        except Exception:
            self.put_back(ids)
            raise

    def close(self) -> None:
        """Write the outcomes queued, then mark every ended run done (retried through an outage)."""
        self._writes.close()
        try:
            self.flush(through_outage=True)
        except Exception:  # noqa: BLE001 - the bus is gone: a replay may run them once more
            logger.warning("could not mark the runs of %d ended job(s) done", self.pending)
