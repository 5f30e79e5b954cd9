"""``hi.RemoteJobHandler``: sends jobs through the MongoDB bus to a named compute resource.

Each job is packed with ``hither.outside.path.prepare_document`` (large arrays, files and code
go to the content store as ``sha1://`` URIs), signed, and inserted on the bus (jobs queued
together in one insert); a client thread, woken by the bus's change stream when a job
ends (polling every ``poll_interval`` where the server has none, or with
``change_streams=False``), reports outcomes with ``hither.outside.path.collect_document``::

    db = hi.Database(mongo_url="mongodb://127.0.0.1:27017", database="hither")
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1")
    with hi.Config(job_handler=jh):
        print(add.run(x=1, y=2).wait())
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hither.errors import ConfigError, HitherError, InfrastructureError, JobTimeoutError
from hither.plugins.interfaces import JobHandler, Store

from .models import FINAL, BusJob, BusOutcome, BusStatus, CachePolicy
from .endpoint import byte_count, endpoint, seconds
from .signing import job_problem, outcome_problem, sign
from .wakeups import ChangeWatcher

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job
    from hither.models import Database

logger = logging.getLogger("hither_remote.handler")

#: a job the resource has not started after this long is refused by it
DEFAULT_EXPIRES_IN = 24 * 3600.0
#: a job waiting this long while no serving process of its resource is alive is warned of
DEFAULT_WARN_NO_RESOURCE = 60.0
#: queued jobs whose start the client reads at most per safety poll (the oldest)
STARTED_READ = 100
#: jobs sent to the bus in one insert at most
SUBMIT_BATCH = 100
#: while the change stream wakes the client: how often it looks at its queued jobs' expiry
#: and at whether their resource is alive (no read of the bus for it, mostly)
SAFETY_POLL = 1.0
#: while the change stream wakes the client: how often it still reads every pending job and
#: which queued ones started (a stream that broke is read at once: ``on_gap``); each read is
#: one query per ``bus.IN_CHUNK`` jobs, which the bus server pays for during a burst
SAFETY_READ = 5.0
#: reported jobs are marked collected on the bus in batches: this many, or after this many s
COLLECTED_BATCH = 200
COLLECTED_EVERY = 0.5
#: pending jobs from which the change stream's reads gather events (see ``_many_pending``)
GATHER_PENDING = 4


def _ended_job(bus_id: str, fields: Dict[str, Any]) -> Optional[BusJob]:
    """The end of a job as a change event's updated fields tell it (status and outcome are
    written together), or None when they do not tell it all (then the job is read)."""
    status, outcome = fields.get("status"), fields.get("outcome")
    try:
        if BusStatus(status) not in FINAL or (outcome is None and status != BusStatus.CANCELLED.value):
            return None
        return BusJob.model_construct(id=bus_id, status=BusStatus(status),
                                      outcome=BusOutcome.model_validate(outcome) if outcome else None)
    except (ValueError, TypeError):
        return None


def _cache_policy(job: "Job") -> CachePolicy:
    """The job's cache settings, for the resource's job cache."""
    jc = job.config.job_cache
    return CachePolicy(force_run=bool(job.config.force_run or (jc is not None and jc.force_run)),
                       cache_failing=None if jc is None else jc.cache_failing,
                       rerun_failing=None if jc is None else jc.rerun_failing)


class RemoteJobError(HitherError):
    """A job the compute resource refused or could not run (the message says why)."""


class BusUnavailableError(RemoteJobError, InfrastructureError):
    """The job bus (MongoDB) could not be reached to submit the job: not the job's fault,
    so ``hi.Retry`` submits it again later by default."""


class RemoteJobHandler(JobHandler):
    """Runs jobs on the compute resource ``compute_resource_id`` reached through ``database``
    (see the module docstring). ``store``: the content store both sides read (default:
    ``hither.content.stores.default_store()``); ``secret``/``secret_file``: the shared secret (default
    ``$HITHER_REMOTE_SECRET``); ``expires_in``: seconds a job may wait to be started;
    ``change_streams=False``: poll every ``poll_interval`` s instead of waking on the bus's
    change stream; ``warn_no_resource_after``: seconds a job may wait queued while no live
    serving process of ``compute_resource_id`` was seen (heartbeat) before a warning is
    logged (None: never).

    A job is ``QUEUED`` until a resource claims it, then ``RUNNING``. One that no resource
    started by its expiry (``expires_in``, signed into the document: the resource refuses
    it after that) is cancelled on the bus and fails with ``RemoteJobError``."""

    name = "remote"
    crosses_machine = True
    containers_run_here = False
    needs_code_bundle = True
    supports_timeout = True

    def __init__(self, database: "Database", compute_resource_id: str, store: Optional[Store] = None, *,
                 secret: Any = None, secret_file: Optional[str] = None,
                 poll_interval: float = 0.05, expires_in: float = DEFAULT_EXPIRES_IN,
                 inline_max_bytes: Optional[int] = None, change_streams: bool = True,
                 warn_no_resource_after: Optional[float] = DEFAULT_WARN_NO_RESOURCE) -> None:
        from .bus import Bus

        me = "RemoteJobHandler"
        self.poll_interval = seconds(me, "poll_interval", poll_interval)
        self.expires_in = seconds(me, "expires_in", expires_in)
        self.inline_max_bytes = byte_count(me, "inline_max_bytes", inline_max_bytes)
        self.warn_no_resource_after = None if warn_no_resource_after is None else seconds(
            me, "warn_no_resource_after", warn_no_resource_after)
        #: bus id -> (monotonic time it was queued here, its signed expiry): not started yet
        self._queued: Dict[str, Tuple[float, float]] = {}
        self._resource_check = 0.0  # monotonic time of the last look for a live resource
        self._warned = False
        self.compute_resource_id, self._secret, self.result_store = endpoint(
            me, compute_resource_id, secret, secret_file, store)
        self.bus = Bus(database)
        self.bus.ensure_indexes()
        self._lock = threading.Lock()
        self._pending: Dict[str, "Job"] = {}       # bus id -> job, submitted and not reported
        # bus ids the change stream saw end -> the job as the event told it (None: read it)
        self._ended: Dict[str, Optional[BusJob]] = {}
        self._look_all = True                      # events may have been lost: read all pending
        self._wake = threading.Event()
        self._bus_ids: Dict[int, str] = {}         # id(job) -> bus id
        self._to_submit: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._closed = threading.Event()
        self._submitter = threading.Thread(target=self._submit_loop, name="hither-remote-submit", daemon=True)
        self._poller = threading.Thread(target=self._poll_loop, name="hither-remote-poll", daemon=True)
        self._watcher: Optional[ChangeWatcher] = None
        if change_streams:
            self._watcher = self._start_watcher()
        self._submitter.start()
        self._poller.start()

    def __repr__(self) -> str:
        return (f"RemoteJobHandler(database={self.bus.database.database!r}, "
                f"compute_resource_id={self.compute_resource_id!r})")

    # ------------------------------------------------------------------ JobHandler
    def submit(self, job: "Job", inline: bool) -> None:
        if self._closed.is_set():
            raise ConfigError("this RemoteJobHandler was shut down; make a new one")
        self._to_submit.put(job)

    def cancel(self, job: "Job") -> bool:
        with self._lock:
            bus_id = self._bus_ids.pop(id(job), None)
            if bus_id is not None:
                self._pending.pop(bus_id, None)
                self._queued.pop(bus_id, None)
        job.report_cancelled()
        if bus_id is not None:
            try:
                self.bus.request_cancel(bus_id)
            except Exception:  # noqa: BLE001 - the job is cancelled here either way
                logger.exception("could not send the cancel of %s to the bus", bus_id)
        return True

    def shutdown(self, wait: bool = True) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
        with self._lock:
            pending = list(self._pending.values())
        for job in pending:
            self.cancel(job)
        # jobs still waiting to be packed
        while True:
            try:
                job = self._to_submit.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.report_cancelled()
        self._to_submit.put(None)  # after the drain above: it ends the submitter
        if wait:
            self._submitter.join(10)
            self._poller.join(10)
        self.bus.close()

    # ------------------------------------------------------------------ threads
    def _submit_loop(self) -> None:
        while True:
            batch = [self._to_submit.get()]
            # jobs .run() queued meanwhile go to the bus in one insert
            while batch[-1] is not None and len(batch) < SUBMIT_BATCH:
                try:
                    batch.append(self._to_submit.get_nowait())
                except queue.Empty:
                    break
            ready: List[Tuple["Job", BusJob]] = []
            for job in batch:
                if job is None or self._closed.is_set():
                    if job is not None:
                        job.report_cancelled()
                    continue
                bus_job = self._pack(job)
                if bus_job is not None:
                    ready.append((job, bus_job))
            if ready:
                self._send(ready)
            if batch[-1] is None:
                return

    def _pack(self, job: "Job") -> Optional[BusJob]:
        """``job`` as a signed bus document, registered as pending; None when it needs none
        (cancelled, failed to pack, or following a job an earlier client sent)."""
        from hither.outside.path import prepare_document

        if job.is_done():  # cancelled before it was sent
            return None
        try:
            if self._attach(job):
                if self._closed.is_set():
                    self.cancel(job)
                return None
            document = prepare_document(job, self.result_store, self.inline_max_bytes)
            now = time.time()
            bus_job = BusJob(_id=uuid.uuid4().hex, resource_id=self.compute_resource_id,
                             function_name=job.function_name, job_hash=job.job_hash,
                             database=self.bus.database.database,
                             document=document, created=now,
                             expires=now + self.expires_in, updated=now,
                             cache_policy=_cache_policy(job))
            bus_job.signature = sign(bus_job.signed_fields(), self._secret)
            if job.is_done():  # cancelled while it was being packed
                return None
            with self._lock:  # queued until a resource claims it
                self._queued[bus_job.id] = (time.monotonic(), bus_job.expires)
                self._pending[bus_job.id] = job
                self._bus_ids[id(job)] = bus_job.id
            return bus_job
        except Exception as exc:  # noqa: BLE001 - this job's failure, not the handler's
            self._forget(job)
            job.report_error(exc)
            return None

    def _forget(self, job: "Job") -> None:
        with self._lock:
            bus_id = self._bus_ids.pop(id(job), None)
            if bus_id:
                self._pending.pop(bus_id, None)
                self._queued.pop(bus_id, None)

    def _send(self, ready: List[Tuple["Job", BusJob]]) -> None:
        try:
            self._submit_with_retry([bus_job for _, bus_job in ready])
        except Exception as exc:  # noqa: BLE001 - these jobs' failure, not the handler's
            for job, _ in ready:
                self._forget(job)
                job.report_error(exc)
            return
        for job, bus_job in ready:
            with self._lock:
                cancelled_meanwhile = id(job) not in self._bus_ids and job.get_status().value == "cancelled"
            try:
                if cancelled_meanwhile:  # cancel() ran before the insert reached the bus
                    self.bus.request_cancel(bus_job.id)
                elif self._closed.is_set():  # shut down while this job was being sent
                    self.cancel(job)
            except Exception:  # noqa: BLE001 - the job is cancelled here either way
                logger.exception("could not send the cancel of %s to the bus", bus_job.id)
            logger.debug("sent %s (%s) to %s as %s", job.function_name, job.id,
                         self.compute_resource_id, bus_job.id)

    def _attach(self, job: "Job") -> bool:
        """With a job cache configured: follow the same job (same hash) that an earlier
        client process sent to this resource, queued, running or finished, instead of
        sending it again (a client killed and restarted gets its results without a rerun)."""
        if job.config.job_cache is None:
            return False
        earlier = None
        for candidate in self.bus.latest_for_hash(self.compute_resource_id, job.job_hash):
            why = job_problem(candidate, self._secret, self.bus.database.database)
            if why is None and candidate.job_hash == job.job_hash and candidate.function_name == job.function_name:
                earlier = candidate
                break
            logger.warning("not following bus job %s for %s (%s): %s", candidate.id, job.function_name,
                           job.id, why or "its signed hash or function is another job's")
        if earlier is None:
            return False
        logger.info("%s (%s) follows %s, sent earlier to %s (%s)", job.function_name, job.id,
                    earlier.id, self.compute_resource_id, earlier.status.value)
        with self._lock:
            if earlier.status == BusStatus.QUEUED:
                self._queued[earlier.id] = (time.monotonic(), earlier.expires)
            else:
                job.report_running()
            self._pending[earlier.id] = job
            self._bus_ids[id(job)] = earlier.id
        return True

    def _submit_with_retry(self, bus_jobs: List[BusJob], attempts: int = 6) -> None:
        import pymongo.errors

        for i in range(attempts):
            try:
                if len(bus_jobs) == 1:
                    self.bus.submit(bus_jobs[0])
                else:
                    self.bus.submit_many(bus_jobs)
                return
            except pymongo.errors.DuplicateKeyError:
                return  # an earlier attempt got through
            except pymongo.errors.PyMongoError as exc:
                if i == attempts - 1:
                    if isinstance(exc, pymongo.errors.ConnectionFailure):
                        raise BusUnavailableError(
                            f"the job bus ({self.bus.database.database} at the MongoDB of "
                            f"compute resource {self.compute_resource_id!r}) could not be reached to "
                            f"submit {len(bus_jobs)} job(s) ({attempts} tries): {type(exc).__name__}: "
                            f"{exc}") from exc
                    raise
                logger.warning("the bus is unreachable; retrying the submit of %d job(s)", len(bus_jobs))
                time.sleep(min(2.0, 0.25 * 2 ** i))

    def _start_watcher(self) -> ChangeWatcher:
        """Wake-ups from the bus's change stream when a job reaches a final status."""
        pipeline = [{"$match": {"operationType": "update", "updateDescription.updatedFields.status": {
            "$in": [s.value for s in FINAL] + [BusStatus.RUNNING.value]}}}]

        def on_change(change: Dict[str, Any]) -> None:
            bus_id = (change.get("documentKey") or {}).get("_id")
            with self._lock:
                if bus_id not in self._pending:
                    return  # another client's job
                fields = (change.get("updateDescription") or {}).get("updatedFields") or {}
                if fields.get("status") == BusStatus.RUNNING.value:  # claimed by a resource
                    if self._queued.pop(bus_id, None) is not None:
                        self._pending[bus_id].report_running()
                    return
            ended = _ended_job(bus_id, (change.get("updateDescription") or {}).get("updatedFields") or {})
            with self._lock:
                self._ended[bus_id] = ended
            self._wake.set()

        def on_gap() -> None:
            self._look_all = True
            self._wake.set()

        return ChangeWatcher(self.bus.jobs, pipeline, on_change, on_gap, name="client",
                            gather=self._many_pending).start()

    def _many_pending(self) -> bool:
        """Whether this client waits for so many jobs that its change stream's reads may
        gather several jobs' events (``wakeups.GATHER``) rather than answer each at once."""
        return len(self._pending) >= GATHER_PENDING

    def _poll_loop(self) -> None:
        last_full = last_queued = 0.0
        collected: List[str] = []  # reported jobs not yet marked collected on the bus
        last_mark = time.monotonic()
        while not self._closed.is_set():
            watching = self._watcher is not None and self._watcher.watching
            self._wake.wait(self.poll_interval if not watching else SAFETY_POLL)
            self._wake.clear()
            if collected and (self._closed.is_set() or len(collected) >= COLLECTED_BATCH
                              or time.monotonic() - last_mark >= COLLECTED_EVERY):
                self._mark_collected(collected)
                collected, last_mark = [], time.monotonic()
            if self._closed.is_set():
                return
            now = time.monotonic()
            with self._lock:
                # every pending job when polling (or events may be lost), else those that ended
                told: List[BusJob] = []
                if not watching or self._look_all or now - last_full >= max(SAFETY_READ, SAFETY_POLL):
                    ids, full = list(self._pending), True
                else:  # what the events carried needs no read
                    told = [b for i, b in self._ended.items() if b is not None and i in self._pending]
                    ids = [i for i, b in self._ended.items() if b is None and i in self._pending]
                    full = False
                self._ended.clear()
                self._look_all = False
            if full or now - last_queued >= SAFETY_POLL:
                last_full = now if full else last_full
                last_queued = now
                try:
                    self._watch_queued(full)
                except Exception as exc:  # noqa: BLE001 - an outage: the read below says so
                    logger.debug("could not look at the queued jobs (%s)", type(exc).__name__)
            if not ids and not told:
                continue
            try:
                done = told + (self.bus.done_jobs(ids) if ids else [])
            except Exception as exc:  # noqa: BLE001 - an outage: carry on polling
                logger.warning("cannot read the job bus (%s); retrying", type(exc).__name__)
                self._look_all = True
                self._closed.wait(1.0)
                continue
            reported = []
            for bus_job in done:
                with self._lock:
                    self._queued.pop(bus_job.id, None)
                    job = self._pending.pop(bus_job.id, None)
                    if job is not None:
                        self._bus_ids.pop(id(job), None)
                if job is not None:
                    self._report(job, bus_job)
                    reported.append(bus_job.id)
            collected += reported
        self._mark_collected(collected)

    def _watch_queued(self, read_started: bool = True) -> None:
        """The queued jobs that a resource claimed become RUNNING (``read_started``: else
        the change events tell); those past their expiry are cancelled on the bus and fail;
        a warning when they wait while no live serving process of the resource was seen for
        ``warn_no_resource_after`` s."""
        with self._lock:
            queued = dict(self._queued)
        if not queued:
            self._warned = False
            return
        # the oldest first, a bounded read: change events tell of starts, this is the safety net
        for bus_id in self.bus.started_among(list(queued)[:STARTED_READ]) if read_started else []:
            with self._lock:
                job = self._pending.get(bus_id) if self._queued.pop(bus_id, None) else None
            if job is not None:
                job.report_running()
        now, mono = time.time(), time.monotonic()
        for bus_id, (_, expires) in queued.items():
            if expires < now and self.bus.request_cancel(bus_id) == BusStatus.CANCELLED:
                self._expire(bus_id)
        after = self.warn_no_resource_after
        waited = mono - min(t for t, _ in queued.values())
        if after is None or waited < after or mono - self._resource_check < min(after / 2, 10.0):
            return
        self._resource_check = mono
        if self.bus.live_resource_seen(self.compute_resource_id, now - after):
            self._warned = False
        elif not self._warned:
            self._warned = True
            logger.warning("%d job(s) wait queued for compute resource %r, and no serving process of it was seen "
                           "in the last %.0f s: start `hither-remote serve --resource-id %s` on the bus database "
                           "%r, or check the resource id", len(queued), self.compute_resource_id, after,
                           self.compute_resource_id, self.bus.database.database)

    def _expire(self, bus_id: str) -> None:
        with self._lock:
            self._queued.pop(bus_id, None)
            job = self._pending.pop(bus_id, None)
            if job is not None:
                self._bus_ids.pop(id(job), None)
        if job is not None:
            job.report_error(RemoteJobError(
                f"no compute resource {self.compute_resource_id!r} started {job.function_name} before it expired "
                f"(expires_in={self.expires_in:.0f} s); it was cancelled on the bus"))

    def _mark_collected(self, ids: List[str]) -> None:
        try:
            self.bus.mark_collected_many(self.compute_resource_id, ids)
        except Exception as exc:  # noqa: BLE001 - only `clear()` reads it
            logger.warning("could not mark %d job(s) collected on the bus (%s)", len(ids),
                           type(exc).__name__)

    def _report(self, job: "Job", bus_job: BusJob) -> None:
        from hither.outside.path import collect_document

        try:
            outcome = bus_job.outcome
            untrusted = None if bus_job.status == BusStatus.CANCELLED else outcome_problem(bus_job, self._secret)
            if bus_job.problem is not None:
                job.report_error(RemoteJobError(
                    f"{job.function_name} (bus job {bus_job.id}) on compute resource {self.compute_resource_id!r} "
                    f"did not complete: {bus_job.problem}"))
            elif bus_job.status == BusStatus.CANCELLED:
                job.report_cancelled()
            elif untrusted is not None:
                job.report_error(RemoteJobError(
                    f"the outcome of {job.function_name} (bus job {bus_job.id}) from compute resource "
                    f"{self.compute_resource_id!r} was not used: {untrusted}. Run the job again; if this "
                    "repeats, check who can write to the job bus"))
            elif outcome is not None and outcome.kind == "timeout":
                job.report_error(JobTimeoutError(outcome.message or "job_timeout"))
            elif bus_job.status == BusStatus.REFUSED or outcome is None or (
                    not outcome.packed and outcome.message):
                msg = outcome.message if outcome is not None else "no outcome"
                job.report_error(RemoteJobError(
                    f"compute resource {self.compute_resource_id!r} did not run {job.function_name} "
                    f"({bus_job.status.value}): {msg}"))
            else:
                doc = dict(outcome.packed)
                doc["exit_code"] = outcome.exit_code
                collect_document(job, doc, self.result_store)
        except Exception as exc:  # noqa: BLE001
            if not job.is_done():
                job.report_error(exc)
