"""The job bus in MongoDB: submit, claim atomically with a lease, renew, finish, hand back.

Collections (in ``hi.Database(...).database``): ``hither_remote_jobs`` (``BusJob``),
``hither_remote_resources`` (``ResourceHeartbeat``), ``hither_remote_runs`` (one record
per job id a resource started, leased to its runner while it runs: a job whose status is set
back to ``queued`` while it runs is not started twice; a finished one is never run again,
which refuses replays) and ``hither_remote_collected`` (which ended jobs their client has
reported: one record per batch, ``{resource_id, ids, at}``, rather than a write to each
job; ``clear`` and ``retention`` remove only such jobs beyond their limits)::

    bus = Bus(hi.Database(mongo_url="mongodb://127.0.0.1:27017", database="hither"))
    bus.submit(bus_job)
    doc = bus.claim("resource1", owner="host:123", lease_seconds=30)   # or None
    bus.finish(doc.id, "host:123", BusStatus.FINISHED, BusOutcome(packed=...))

A resource's bus holds the shared secret (``Bus(db, secret=...)``): every outcome it writes
(``finish``, ``refuse``) is signed for its job id and status (``signing.seal_outcome``).
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from hither.models import Database

from .models import FINAL, BusJob, BusOutcome, BusStatus, ResourceHeartbeat
from .signing import Secret, seal_outcome

logger = logging.getLogger("hither_remote.bus")

JOBS = "hither_remote_jobs"
RESOURCES = "hither_remote_resources"
RUNS = "hither_remote_runs"
COLLECTED = "hither_remote_collected"

#: ids per ``$in`` list in the queries over many jobs: SecantusDB tests each document it
#: fetches against the whole list, so one query over n ids costs n² comparisons there
#: (500 ids: ~0.9 s of its CPU; 20 queries of 25 ids: ~30 ms)
IN_CHUNK = 25
#: how long a resource keeps trying a write (a job's end) while the bus is unreachable
BUS_RETRY_SECONDS = 60.0


def retry(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` retried through a bus outage of up to ``BUS_RETRY_SECONDS``: a
    resource's writes of a job's end get through once the bus is back (else the job's lease
    expires and it is run again)."""
    import pymongo.errors

    deadline = time.monotonic() + BUS_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return fn(*args)
        except pymongo.errors.PyMongoError as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning("job bus unavailable (%s); retrying %s", type(exc).__name__, fn.__name__)
            time.sleep(delay)
            delay = min(2.0, delay * 2)


def _duplicate_key_indexes(exc: Any) -> Set[int]:
    """The indexes of a bulk write's operations refused for a duplicate ``_id`` (a run
    record that exists); any other write error is raised again."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != 11000 for e in errors):
        raise exc
    return {e["index"] for e in errors}


def _chunks(ids: List[str]) -> Iterable[List[str]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield ids[i:i + IN_CHUNK]


def parse_job(doc: Dict[str, Any]) -> "BusJob | str":
    """``doc`` as a ``BusJob``, or why it is not one (one line, for a refusal): a malformed
    document is the business of that job alone, never of the batch it was read with."""
    try:
        return BusJob.model_validate(doc)
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError and its kin
        first = str(exc).splitlines()
        return f"the job document is malformed ({type(exc).__name__}: {' '.join(first[:3])[:300]})"


def _created(doc: Dict[str, Any]) -> float:
    """A job document's creation time, for the order of claims (0 when it has none)."""
    created = doc.get("created")
    return float(created) if isinstance(created, (int, float)) else 0.0


def _as_claimed(doc: Dict[str, Any], claim: Dict[str, Any]) -> Dict[str, Any]:
    """An inserted job document as the claim's update (its ``$set`` fields, ``attempts``
    plus one) left it on the bus."""
    attempts = doc.get("attempts")
    return {**doc, **claim, "attempts": (attempts if isinstance(attempts, int) else 0) + 1}


def _as_ended(doc: Dict[str, Any]) -> BusJob:
    """An ended job as read by its client; a malformed one as refused, ``problem`` saying why."""
    job = parse_job(doc)
    if isinstance(job, BusJob):
        return job
    return BusJob.model_construct(id=str(doc.get("_id")), status=BusStatus.REFUSED, outcome=None, problem=job)


class Bus:
    """A connection to the job bus of ``database`` (pymongo retries reads and writes, so an
    outage of a few seconds is ridden out by the callers' loops, which log and go on)."""

    def __init__(self, database: Database, server_selection_timeout_ms: int = 5000, *,
                 secret: Optional[Secret] = None) -> None:
        import pymongo

        if not isinstance(database, Database):
            from hither.errors import ConfigError

            raise ConfigError(f"database= needs hi.Database(mongo_url=..., database=...), got {database!r}")
        self.database = database
        # retryWrites off: every write here is guarded (status, owner, claim token) or
        # idempotent, and the callers retry through outages themselves; a retryable write
        # costs a session round of its own on some servers (~3.5 ms of ~4 on SecantusDB)
        self.client = pymongo.MongoClient(database.mongo_url, serverSelectionTimeoutMS=server_selection_timeout_ms,
                                          connectTimeoutMS=server_selection_timeout_ms, retryWrites=False)
        db = self.client[database.database]
        self.jobs = db[JOBS]
        self.resources = db[RESOURCES]
        self.runs = db[RUNS]
        self.collected = db[COLLECTED]
        self._return_after = pymongo.ReturnDocument.AFTER
        self._secret = secret

    def _outcome(self, job_id: str, status: BusStatus, outcome: BusOutcome) -> Dict[str, Any]:
        if self._secret is not None:
            outcome = seal_outcome(job_id, status.value, outcome, self._secret)
        return outcome.model_dump(mode="json")

    def ping(self) -> None:
        self.client.admin.command("ping")

    def ensure_indexes(self) -> bool:
        """The index the claim and the client's queries use (idempotent); False if the bus
        did not answer. That is only logged: the index speeds things up, and the callers
        ride out outages."""
        import pymongo.errors

        from .outage import describe

        try:
            self.jobs.create_index([("resource_id", 1), ("status", 1), ("created", 1)])
        except pymongo.errors.PyMongoError as exc:
            logger.warning("could not create the job bus index (%s); going on without it", describe(exc))
            return False
        return True

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ client side
    def submit(self, job: BusJob) -> None:
        self.jobs.insert_one(job.to_mongo())

    def submit_many(self, jobs: List[BusJob]) -> None:
        """Insert several jobs in one round trip; ids already on the bus (an earlier attempt
        that got through) are skipped."""
        import pymongo.errors

        try:
            self.jobs.insert_many([j.to_mongo() for j in jobs], ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise

    def done_jobs(self, ids: Iterable[str]) -> List[BusJob]:
        """The jobs among ``ids`` that reached a final status."""
        ids = list(ids)
        if not ids:
            return []
        final = [s.value for s in FINAL]
        return [_as_ended(d) for chunk in _chunks(ids)
                for d in self.jobs.find({"_id": {"$in": chunk}, "status": {"$in": final}})]

    def started_among(self, ids: List[str]) -> List[str]:
        """Which of ``ids`` a resource claimed (running, or asked to cancel while running)."""
        started = [BusStatus.RUNNING.value, BusStatus.CANCEL_REQUESTED.value]
        return [d["_id"] for chunk in _chunks(ids)
                for d in self.jobs.find({"_id": {"$in": chunk}, "status": {"$in": started}}, {"_id": 1})]

    def live_resource_seen(self, resource_id: str, since: float) -> bool:
        """Whether a serving process of ``resource_id`` beat its heartbeat after ``since``."""
        return self.resources.find_one({"resource_id": resource_id, "stopped": False,
                                        "last_seen": {"$gte": since}}, {"_id": 1}) is not None

    def latest_for_hash(self, resource_id: str, job_hash: str, limit: int = 5) -> List[BusJob]:
        """Up to ``limit`` of the newest jobs of ``resource_id`` with ``job_hash`` that are
        queued, running or finished (jobs an earlier client process sent), newest first;
        unchecked (the caller verifies them: ``signing.job_problem``), malformed ones left out."""
        docs = self.jobs.find({"resource_id": resource_id, "job_hash": job_hash,
                               "status": {"$in": [BusStatus.QUEUED.value, BusStatus.RUNNING.value,
                                                  BusStatus.FINISHED.value]}}).sort("created", -1).limit(limit)
        return [j for j in (parse_job(d) for d in docs) if isinstance(j, BusJob)]

    def mark_collected_many(self, resource_id: str, job_ids: Iterable[str]) -> None:
        """Record that the client reported these ended jobs of ``resource_id``: one small
        record per batch (an update of each job document cost the bus server ~0.8 ms a job)."""
        ids = list(job_ids)
        if ids:
            self.collected.insert_one({"_id": uuid.uuid4().hex, "resource_id": resource_id, "ids": ids,
                                       "at": time.time()})

    def collected_ids(self, resource_id: str) -> Tuple[List[str], Set[str]]:
        """The ids of the collected-records of ``resource_id`` and the job ids they name (an
        older client's ``collected: true`` on a job counts too: the callers query for it)."""
        records: List[str] = []
        ids: Set[str] = set()
        for d in self.collected.find({"resource_id": resource_id}, {"ids": 1}):
            records.append(d["_id"])
            if isinstance(d.get("ids"), list):
                ids.update(i for i in d["ids"] if isinstance(i, str))
        return records, ids

    def request_cancel(self, job_id: str) -> Optional[BusStatus]:
        """Cancel a queued job at once, or ask the resource to stop a running one; the
        job's status afterwards (None if it is not on the bus)."""
        now = time.time()
        doc = self.jobs.find_one_and_update(
            {"_id": job_id, "status": BusStatus.QUEUED.value},
            {"$set": {"status": BusStatus.CANCELLED.value, "updated": now, "ended": now}},
            return_document=self._return_after)
        if doc is None:
            doc = self.jobs.find_one_and_update(
                {"_id": job_id, "status": BusStatus.RUNNING.value},
                {"$set": {"status": BusStatus.CANCEL_REQUESTED.value, "updated": now}},
                return_document=self._return_after)
        if doc is None:
            doc = self.jobs.find_one({"_id": job_id}, {"status": 1})
        return None if doc is None else BusStatus(doc["status"])

    def get(self, job_id: str) -> Optional[BusJob]:
        doc = self.jobs.find_one({"_id": job_id})
        return None if doc is None else BusJob.model_validate(doc)

    # ------------------------------------------------------------------ resource side
    def claim(self, resource_id: str, owner: str, lease_seconds: float) -> Optional[BusJob]:
        """Take the oldest job of ``resource_id`` that is queued or whose lease expired (its
        resource died), atomically: two resources never get the same job."""
        got = self.claim_many(resource_id, owner, lease_seconds, 1)
        return got[0] if got else None

    def claim_many(self, resource_id: str, owner: str, lease_seconds: float, n: int) -> List[BusJob]:
        """Take up to ``n`` of the oldest jobs of ``resource_id`` that are queued or whose
        lease expired: find candidates, then ``claim_ids``. Two resources never get the
        same job (see ``claim_ids``)."""
        out: List[BusJob] = []
        for _ in range(3):  # again only after losing a race for some of the candidates
            now = time.time()
            # equality on status (not an $or): the index serves both queries, and yields
            # jobs in the order they were created
            queued = [d["_id"] for d in self.jobs.find(
                {"resource_id": resource_id, "status": BusStatus.QUEUED.value}, {"_id": 1}).limit(n - len(out))]
            expired: List[str] = []
            if len(out) + len(queued) < n:
                expired = self._lapsed(resource_id, BusStatus.RUNNING, now)[:n - len(out) - len(queued)]
            if not queued and not expired:
                break
            got = self.claim_ids(resource_id, queued, owner, lease_seconds, expired=expired)
            out += got
            if len(got) == len(queued) + len(expired) or len(out) >= n:
                break
        return out

    def claim_ids(self, resource_id: str, ids: List[str], owner: str, lease_seconds: float,
                  expired: Optional[List[str]] = None,
                  inserted: Optional[Dict[str, Dict[str, Any]]] = None) -> List[BusJob]:
        """Claim the queued jobs of ``resource_id`` among ``ids`` (and the running ones among ``expired`` whose
        lease has passed) in two round trips: one ``update_many`` that marks them with a
        claim token, its filter (still queued, or lease still expired) passed by each
        document atomically or not at all, then a read of those bearing the token. A job
        another claimer took first no longer passes the filter: it is never taken twice.

        ``inserted``: the documents of some of ``ids`` as their insert events carried them
        (the change stream's ``fullDocument``). When it holds all of ``ids`` and the update
        claimed every one, the jobs are those documents as the update changed them, and no
        read follows (what runs is checked as ever: ``signing.run_problem``)."""
        if not ids and not expired:
            return []
        now = time.time()
        token = uuid.uuid4().hex
        update: Dict[str, Any] = {"$set": {"status": BusStatus.RUNNING.value, "lease_owner": owner, "claim": token,
                           "lease_expires": now + lease_seconds, "updated": now, "started": now},
                  "$inc": {"attempts": 1}}
        # (not find_one_and_update for one job: SecantusDB scans the whole collection for
        # it, ~33 ms of its CPU at 3000 jobs, against ~4 ms for these two round trips)
        if ids:
            r = self.jobs.update_many({"_id": {"$in": list(ids)}, "resource_id": resource_id,
                                       "status": BusStatus.QUEUED.value}, update)
            if not expired and inserted and r.modified_count == len(ids) and all(i in inserted for i in ids):
                return self._claimed(sorted((_as_claimed(inserted[i], update["$set"]) for i in ids),
                                            key=_created), owner)
        if expired:
            self.jobs.update_many({"_id": {"$in": list(expired)}, "resource_id": resource_id,
                                   "status": BusStatus.RUNNING.value, "lease_expires": {"$lt": now}}, update)
        docs = list(self.jobs.find({"_id": {"$in": list(ids) + list(expired or [])}, "claim": token}))
        return self._claimed(sorted(docs, key=_created), owner)

    def _claimed(self, docs: List[Dict[str, Any]], owner: str) -> List[BusJob]:
        """The claimed documents as jobs; a malformed one is refused alone, with the reason."""
        out = []
        for d in docs:
            job = parse_job(d)
            if isinstance(job, BusJob):
                out.append(job)
            else:  # quarantined: this job alone ends, refused with the reason
                logger.warning("refused bus job %r: %s", d.get("_id"), job)
                self.refuse(d["_id"], owner, job)
        return out

    def renew(self, job_ids: Iterable[str], owner: str, lease_seconds: float) -> None:
        """Extend the leases of ``owner``'s jobs and of its run records of them."""
        ids = list(job_ids)
        if ids:
            until = time.time() + lease_seconds
            self.jobs.update_many({"_id": {"$in": ids}, "lease_owner": owner}, {"$set": {"lease_expires": until}})
            self.runs.update_many({"_id": {"$in": ids}, "owner": owner, "done": False},
                                  {"$set": {"lease_expires": until}})

    def cancel_requested(self, job_ids: Iterable[str]) -> List[str]:
        """Which of ``job_ids`` the client asked to cancel."""
        ids = list(job_ids)
        if not ids:
            return []
        return [d["_id"] for d in self.jobs.find(
            {"_id": {"$in": ids}, "status": BusStatus.CANCEL_REQUESTED.value}, {"_id": 1})]

    def finish(self, job_id: str, owner: str, status: BusStatus, outcome: BusOutcome) -> bool:
        """Write the outcome of a job this owner holds; a job whose cancel was requested ends
        cancelled. False if the job is no longer ours (lease lost and taken by another)."""
        now = time.time()
        base = {"_id": job_id, "lease_owner": owner}
        s = {"updated": now, "ended": now, "lease_expires": None}
        # the common case first: one round trip when no cancel was requested
        r = self.jobs.update_one({**base, "status": BusStatus.RUNNING.value},
                                 {"$set": {**s, "status": status.value,
                                           "outcome": self._outcome(job_id, status, outcome)}})
        if r.modified_count:
            return True
        r = self.jobs.update_one({**base, "status": BusStatus.CANCEL_REQUESTED.value},
                                 {"$set": {**s, "status": BusStatus.CANCELLED.value,
                                           "outcome": self._outcome(job_id, BusStatus.CANCELLED, outcome)}})
        return bool(r.modified_count)

    def finish_many(self, owner: str, ends: List[Tuple[str, BusStatus, BusOutcome]]) -> List[bool]:
        """``finish`` for several jobs (``(job_id, status, outcome)``) in one round trip when
        none of them was asked to cancel; whether each outcome was written. Only the jobs
        the bulk update did not reach (a cancel request, a lost lease, a retry after a
        write that got through) are looked at again, one by one."""
        from pymongo import UpdateOne

        if not ends:
            return []
        now = time.time()
        ops = [UpdateOne({"_id": job_id, "lease_owner": owner, "status": BusStatus.RUNNING.value},
                         {"$set": {"updated": now, "ended": now, "lease_expires": None, "status": status.value,
                                   "outcome": self._outcome(job_id, status, outcome)}})
               for job_id, status, outcome in ends]
        if self.jobs.bulk_write(ops, ordered=False).modified_count == len(ops):
            return [True] * len(ops)
        docs = {d["_id"]: d for d in self.jobs.find({"_id": {"$in": [e[0] for e in ends]}},
                                                   {"status": 1, "lease_owner": 1})}
        out = []
        for job_id, status, outcome in ends:
            d = docs.get(job_id) or {}
            if d.get("lease_owner") != owner:
                out.append(False)  # no longer ours
            elif d.get("status") in (BusStatus.RUNNING.value, BusStatus.CANCEL_REQUESTED.value):
                out.append(self.finish(job_id, owner, status, outcome))
            else:
                out.append(True)  # final and ours: this bulk write (or an earlier try) wrote it
        return out

    def refuse(self, job_id: str, owner: str, message: str) -> None:
        now = time.time()
        self.jobs.update_one({"_id": job_id, "lease_owner": owner},
                             {"$set": {"status": BusStatus.REFUSED.value, "updated": now, "ended": now,
                                       "lease_expires": None,
                                       "outcome": self._outcome(job_id, BusStatus.REFUSED,
                                                                BusOutcome(message=message))}})

    def hand_back(self, job_id: str, owner: str) -> None:
        """Return a job this owner did not finish to the queue, its run record released so
        that another process may run it at once (a cancel request ends it)."""
        now = time.time()
        self.runs.delete_one({"_id": job_id, "owner": owner, "done": False})
        self.jobs.update_one({"_id": job_id, "lease_owner": owner, "status": BusStatus.RUNNING.value},
                             {"$set": {"status": BusStatus.QUEUED.value, "lease_owner": None,
                                       "lease_expires": None, "updated": now}})
        self.jobs.update_one({"_id": job_id, "lease_owner": owner,
                              "status": BusStatus.CANCEL_REQUESTED.value},
                             {"$set": {"status": BusStatus.CANCELLED.value, "lease_expires": None,
                                       "updated": now, "ended": now}})

    def _lapsed(self, resource_id: str, status: BusStatus, now: float) -> List[str]:
        """The ids of ``resource_id``'s jobs in ``status`` whose lease passed before ``now``,
        oldest first. The query is by equality only (the index's prefix) and the lease is
        compared here: SecantusDB answers a range on ``lease_expires`` with a scan of the
        whole collection (~100 ms of its CPU at 3000 jobs, where this takes ~4 ms); the
        jobs of one resource in one status are few."""
        docs = self.jobs.find({"resource_id": resource_id, "status": status.value}, {"_id": 1, "lease_expires": 1})
        return [d["_id"] for d in docs
                if isinstance(d.get("lease_expires"), (int, float)) and d["lease_expires"] < now]

    def sweep(self, resource_id: str) -> None:
        """End the cancel requests whose resource died before it saw them."""
        now = time.time()
        lapsed = self._lapsed(resource_id, BusStatus.CANCEL_REQUESTED, now)
        for chunk in _chunks(lapsed):
            self.jobs.update_many({"_id": {"$in": chunk}, "status": BusStatus.CANCEL_REQUESTED.value,
                                   "lease_expires": {"$lt": now}},
                                  {"$set": {"status": BusStatus.CANCELLED.value, "updated": now, "ended": now}})

    def start_run(self, job_id: str, owner: str) -> bool:
        """``start_runs`` for one job."""
        return self.start_runs([job_id], owner)[0]

    def end_run(self, job_id: str) -> None:
        self.runs.update_one({"_id": job_id}, {"$set": {"done": True, "ended": time.time()}}, upsert=True)

    def start_runs(self, job_ids: List[str], owner: str, lease_seconds: float = 0.0) -> List[bool]:
        """For each of ``job_ids``: whether ``owner`` may run it now (``begin_runs``)."""
        return [v is None or v == owner for v in self.begin_runs(job_ids, owner, lease_seconds)]

    def begin_runs(self, job_ids: List[str], owner: str, lease_seconds: float,
                   expires: Optional[List[float]] = None, ended: Iterable[str] = ()) -> List[Optional[str]]:
        """Take the run record of each of ``job_ids`` for ``owner``, with a lease of
        ``lease_seconds`` (renewed by ``renew``). For each: None when taken (run it), ``""``
        when a run of it already ended (a replayed document), else the owner of a run still
        going (a job relabelled ``queued`` on the bus: not run twice). A record is taken when
        absent, or not done and its lease passed. ``expires``: each job's signed expiry, kept
        on its record (``retention.prune`` removes a record once its job expired). ``ended``:
        ids whose runs to mark done first (``end_runs``, whose outcomes are on the bus).

        The records go in with one ``insert_many`` (an insert costs SecantusDB about half
        an upsert); only ids whose record exists already (a replay, a rerun after a lapsed
        lease, a relabelled job) take the conditional upsert of ``_take_runs``."""
        import pymongo.errors

        self.end_runs(list(ended))
        if not job_ids:
            return []
        now = time.time()
        exp: List[Optional[float]] = list(expires) if expires is not None else [None] * len(job_ids)
        records = [{"_id": job_id, "owner": owner, "started": now, "done": False, "expires": e,
                    "lease_expires": now + lease_seconds} for job_id, e in zip(job_ids, exp)]
        try:
            self.runs.insert_many(records, ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            held = sorted(_duplicate_key_indexes(exc))
            taken = self._take_runs([job_ids[i] for i in held], owner, lease_seconds, [exp[i] for i in held])
            out: List[Optional[str]] = [None] * len(job_ids)
            for i, v in zip(held, taken):
                out[i] = v
            return out
        return [None] * len(job_ids)

    def _take_runs(self, job_ids: List[str], owner: str, lease_seconds: float,
                   expires: List[Optional[float]]) -> List[Optional[str]]:
        """``begin_runs`` for ids whose run record exists: taken when not done and its lease
        passed (an upsert whose filter says so; else it collides with the record's ``_id``)."""
        import pymongo.errors
        from pymongo import UpdateOne

        now = time.time()
        ops: List[Any] = [UpdateOne({"_id": job_id, "done": {"$ne": True},
                          # lease passed or none; not an $or: SecantusDB scans the whole
                          # collection for a filter with a top-level operator
                          "lease_expires": {"$not": {"$gte": now}}},
                         {"$set": {"owner": owner, "started": now, "done": False, "expires": e,
                                   "lease_expires": now + lease_seconds}}, upsert=True)
               for job_id, e in zip(job_ids, expires)]
        try:
            self.runs.bulk_write(ops, ordered=False)
        except pymongo.errors.BulkWriteError as exc:
            taken = {job_ids[i] for i in _duplicate_key_indexes(exc)}
            records = {d["_id"]: d for chunk in _chunks(sorted(taken))
                       for d in self.runs.find({"_id": {"$in": chunk}}, {"done": 1, "owner": 1})}
            out: List[Optional[str]] = []
            for job_id in job_ids:
                if job_id not in taken:
                    out.append(None)
                    continue
                d = records.get(job_id) or {"done": True}  # gone meanwhile: as ended, never rerun
                out.append("" if d.get("done") else str(d.get("owner") or ""))
            return out
        return [None] * len(job_ids)

    def hand_over(self, job_id: str, owner: str, runner: str, lease_seconds: float) -> None:
        """Give a job ``owner`` claimed back to ``runner``, whose run of it is still going
        (its bus status had been set back to ``queued``): that run renews and ends it."""
        self.jobs.update_one({"_id": job_id, "lease_owner": owner},
                             {"$set": {"status": BusStatus.RUNNING.value, "lease_owner": runner,
                                       "lease_expires": time.time() + lease_seconds, "updated": time.time()}})

    def end_runs(self, job_ids: List[str]) -> None:
        """``end_run`` for several jobs: one ``update_many`` (per ``IN_CHUNK`` ids; SecantusDB
        writes the documents of one in a chunk, about half the cost of one update each); a
        record it did not find (gone meanwhile) is written done by an upsert."""
        from pymongo import UpdateOne

        now = time.time()
        for chunk in _chunks(list(job_ids)):
            r = self.runs.update_many({"_id": {"$in": chunk}}, {"$set": {"done": True, "ended": now}})
            if r.matched_count < len(chunk):
                self.runs.bulk_write([UpdateOne({"_id": job_id}, {"$set": {"done": True, "ended": now}},
                                                upsert=True) for job_id in chunk], ordered=False)

    def heartbeat(self, hb: ResourceHeartbeat) -> None:
        self.resources.replace_one({"_id": hb.id}, hb.model_dump(by_alias=True), upsert=True)

    def clear(self, resource_id: str) -> int:
        """Remove the finished jobs of ``resource_id`` that their client has collected and
        the records of stopped serving processes; queued and running jobs stay."""
        final = {"resource_id": resource_id, "status": {"$in": [s.value for s in FINAL]}}
        records, ids = self.collected_ids(resource_id)
        n = self.jobs.delete_many({**final, "collected": True}).deleted_count
        for chunk in _chunks(sorted(ids)):
            n += self.jobs.delete_many({**final, "_id": {"$in": chunk}}).deleted_count
        for chunk in _chunks(records):  # those read: their jobs ended, so are gone now
            self.collected.delete_many({"_id": {"$in": chunk}})
        self.resources.delete_many({"resource_id": resource_id, "stopped": True})
        return n

    # ------------------------------------------------------------------ inspection
    def resource_records(self, resource_id: Optional[str] = None) -> List[ResourceHeartbeat]:
        """The heartbeats of serving processes (of ``resource_id``, or all; malformed ones
        left out, logged)."""
        out = []
        for d in self.resources.find({} if resource_id is None else {"resource_id": resource_id}):
            try:
                out.append(ResourceHeartbeat.model_validate(d))
            except ValueError as exc:
                logger.warning("ignoring a malformed resource record %r (%s)", d.get("_id"), type(exc).__name__)
        return out

    def recent_jobs(self, limit: int = 50, resource_id: Optional[str] = None) -> List[Dict[str, Any]]:
        q: Dict[str, Any] = {} if resource_id is None else {"resource_id": resource_id}
        return list(self.jobs.find(q, {"document": 0}).sort("created", -1).limit(limit))

    def counts(self, resource_id: Optional[str] = None) -> Dict[str, int]:
        out: Dict[str, int] = {}
        q: Dict[str, Any] = {} if resource_id is None else {"resource_id": resource_id}
        for s in BusStatus:
            out[s.value] = self.jobs.count_documents({**q, "status": s.value})
        return out
