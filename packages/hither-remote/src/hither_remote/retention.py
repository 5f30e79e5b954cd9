"""What the bus keeps: ``Retention`` (age and count limits) and ``prune``, which applies it.

Without it the bus only grows: ended jobs, run records, heartbeats of killed serving
processes and log chunks stay for ever. ``hither-remote serve`` prunes its resource's part
of the bus at start and every ``--prune-every``; ``hither-remote prune`` does it once::

    r = Retention(max_age=7 * 86400, max_jobs=10_000, dead_after=3600)
    removed = prune(bus, "resource1", r)   # {"jobs": 12, "runs": 30, "resources": 1, "logs": 40}

Queued and running jobs are never removed. A run record (which refuses a replayed job
document) is removed only once its job's signed expiry has passed: the resource refuses
that document for its expiry from then on.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

from .models import FINAL

if TYPE_CHECKING:  # pragma: no cover
    from .bus import Bus

logger = logging.getLogger("hither_remote.retention")

#: defaults of ``hither-remote serve`` and ``hither-remote prune``
DEFAULT_MAX_AGE = 7 * 86400.0
DEFAULT_MAX_JOBS = 10_000
DEFAULT_DEAD_AFTER = 3600.0


@dataclass(frozen=True)
class Retention:
    """``max_age``: seconds an ended job is kept after it ended; ``max_jobs``: ended jobs
    kept per resource at most (the newest; only collected ones are removed for it); ``dead_after``: seconds after its last
    heartbeat that a serving process that did not stop cleanly is forgotten."""

    max_age: float = DEFAULT_MAX_AGE
    max_jobs: int = DEFAULT_MAX_JOBS
    dead_after: float = DEFAULT_DEAD_AFTER


def _resource_ids(bus: "Bus", resource_id: Optional[str]) -> List[str]:
    if resource_id is not None:
        return [resource_id]
    ids = {d.get("resource_id") for d in bus.resources.find({}, {"resource_id": 1})}
    ids |= {d.get("resource_id") for d in bus.jobs.find({}, {"resource_id": 1})}
    ids |= {d.get("resource_id") for d in bus.collected.find({}, {"resource_id": 1})}
    return sorted(i for i in ids if isinstance(i, str))


def _prune_jobs(bus: "Bus", resource_id: str, retention: Retention, now: float) -> int:
    final = {"resource_id": resource_id, "status": {"$in": [s.value for s in FINAL]}}
    n = bus.jobs.delete_many({**final, "ended": {"$lt": now - retention.max_age}}).deleted_count
    # beyond the count, only jobs their client has collected: a result it waits for stays
    _, collected = bus.collected_ids(resource_id)
    extra = [d["_id"] for d in bus.jobs.find(final, {"_id": 1, "collected": 1}).sort("ended", -1)
             .skip(retention.max_jobs) if d.get("collected") is True or d["_id"] in collected]
    for i in range(0, len(extra), 25):
        n += bus.jobs.delete_many({"_id": {"$in": extra[i:i + 25]}}).deleted_count
    # a collected-record names jobs that had ended when it was written: gone after max_age
    bus.collected.delete_many({"resource_id": resource_id, "at": {"$lt": now - retention.max_age}})
    return n


def prune(bus: "Bus", resource_id: Optional[str], retention: Retention,
          now: Optional[float] = None) -> Dict[str, int]:
    """Apply ``retention`` to ``resource_id``'s part of the bus (None: every resource's):
    ended jobs older than ``max_age`` or beyond the newest ``max_jobs``, run records whose
    job expired, heartbeats of stopped processes and of those silent for ``dead_after``,
    and the log chunks of jobs no longer on the bus. How many of each were removed."""
    from .logs import clear_logs

    now = time.time() if now is None else now
    removed = {"jobs": 0, "runs": 0, "resources": 0, "logs": 0}
    for rid in _resource_ids(bus, resource_id):
        removed["jobs"] += _prune_jobs(bus, rid, retention, now)
        removed["resources"] += bus.resources.delete_many({"resource_id": rid, "$or": [
            {"stopped": True}, {"last_seen": {"$lt": now - retention.dead_after}}]}).deleted_count
        removed["logs"] += clear_logs(bus, rid)
    removed["runs"] = bus.runs.delete_many({"expires": {"$lt": now}}).deleted_count
    if any(removed.values()):
        logger.info("pruned the bus of %s: %s", resource_id or "every resource",
                    ", ".join(f"{v} {k}" for k, v in removed.items()))
    return removed


def prune_logged(bus: "Bus", resource_id: str, retention: Retention) -> None:
    """``prune`` for one resource's part of the bus, from its serving process: a failure
    (e.g. an outage) is only logged, and the next time tries again."""
    try:
        prune(bus, resource_id, retention)
    except Exception as exc:  # noqa: BLE001 - e.g. an outage: next time
        logger.warning("could not prune the bus (%s: %s)", type(exc).__name__, exc)
