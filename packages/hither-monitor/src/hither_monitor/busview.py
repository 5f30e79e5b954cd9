"""The remote job bus as the page sees it: resources, jobs, live console output, cancel.

Everything goes through hither-remote's own ``Bus`` and ``read_chunks`` (imported here,
lazily: hither-remote is the optional extra ``hither-monitor[remote]``). Nothing the page
receives holds the MongoDB URL, a secret or a job's packed arguments: each answer is built
from an allow-list of fields.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from hither_remote.bus import Bus

#: a resource whose heartbeat is older than this is shown as not responding
ALIVE_SECONDS = 30.0
_JOB_FIELDS = ("resource_id", "function_name", "status", "attempts", "created", "started", "ended",
               "updated", "lease_owner", "job_hash")


class BusUnavailable(Exception):
    """hither-remote is not installed, or the bus cannot be reached (the message says which)."""


def open_bus(mongo_url: str, database: str, timeout_ms: int = 3000) -> "Bus":
    """hither-remote's Bus on ``database`` at ``mongo_url``, checked with a ping."""
    try:
        from hither_remote.bus import Bus
    except ImportError:
        raise BusUnavailable("--mongo-url needs hither-remote: pip install 'hither-monitor[remote]'") from None
    from hither.models import Database

    try:
        bus = Bus(Database(mongo_url=mongo_url, database=database), server_selection_timeout_ms=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - pymongo's InvalidURI, ConfigError: say which, no trace
        raise BusUnavailable(f"bad --mongo-url ({type(exc).__name__}: {_scrub(str(exc), mongo_url)})") from None
    try:
        bus.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable server
        bus.close()
        raise BusUnavailable(f"cannot reach the MongoDB of --mongo-url ({type(exc).__name__}: "
                             f"{_scrub(str(exc), mongo_url)[:200]})") from None
    return bus


def _scrub(text: str, mongo_url: str) -> str:
    """``text`` without the URL's user and password (drivers quote them in errors)."""
    if "@" in mongo_url and "//" in mongo_url:
        creds = mongo_url.split("//", 1)[1].split("@", 1)[0]
        if creds:
            text = text.replace(creds, "***")
    return text


class BusView:
    """Read the bus for the page; cancel a job on it. Calls are serialized (one client)."""

    def __init__(self, bus: "Bus") -> None:
        self.bus = bus
        self._lock = threading.Lock()

    def summary(self, limit: int = 100, resource_id: Optional[str] = None) -> Dict[str, Any]:
        with self._lock:
            now = time.time()
            resources = [{
                "resource_id": hb.resource_id, "owner": hb.owner, "running": hb.running,
                "capacity": hb.capacity, "started": hb.started, "last_seen": hb.last_seen,
                "state": "stopped" if hb.stopped else ("alive" if now - hb.last_seen < ALIVE_SECONDS
                                                       else "not responding"),
            } for hb in sorted(self.bus.resource_records(), key=lambda h: (h.resource_id, h.owner))]
            jobs = [self._job_fields(d) for d in self.bus.recent_jobs(max(1, min(limit, 500)), resource_id)]
            return {"now": now, "resources": resources, "counts": self.bus.counts(resource_id), "jobs": jobs}

    @staticmethod
    def _job_fields(doc: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {"job_id": str(doc.get("_id"))}
        out.update({k: doc.get(k) for k in _JOB_FIELDS})
        outcome = doc.get("outcome") or {}
        if isinstance(outcome, dict):
            out["message"] = outcome.get("message")
            out["exit_code"] = outcome.get("exit_code")
        return out

    def job(self, job_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            doc = self.bus.jobs.find_one({"_id": job_id}, {"document": 0})
        return None if doc is None else self._job_fields(doc)

    def find_by_hash(self, job_hash: str, limit: int = 5) -> List[Dict[str, Any]]:
        """The bus jobs of a hither job (same ``job_hash``), newest first: how a job of the
        event log run by a RemoteJobHandler is found on the bus."""
        with self._lock:
            docs = list(self.bus.jobs.find({"job_hash": job_hash}, {"document": 0})
                        .sort("created", -1).limit(max(1, min(limit, 50))))
        return [self._job_fields(d) for d in docs]

    def console(self, job_id: str, after: int = -1, attempt: Optional[int] = None) -> Dict[str, Any]:
        """New console output of ``job_id`` since chunk ``after`` (live while it runs)."""
        from hither_remote.logs import read_chunks

        with self._lock:
            chunks = read_chunks(self.bus, job_id, after, attempt)
        text = "".join(c.text for c in chunks)
        return {"text": text, "seq": chunks[-1].seq if chunks else after,
                "attempt": chunks[-1].attempt if chunks else attempt,
                "truncated": any(c.truncated for c in chunks)}

    def cancel(self, job_id: str) -> Optional[str]:
        """Cancel ``job_id`` as ``hither-remote cancel`` does; its status after, None if unknown."""
        with self._lock:
            st = self.bus.request_cancel(job_id)
        return None if st is None else st.value

    def close(self) -> None:
        self.bus.close()

