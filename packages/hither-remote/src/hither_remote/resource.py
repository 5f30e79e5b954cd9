"""``hi.ComputeResource``: claims this resource's jobs from the bus and runs them here.

Each claimed job is checked (``signing.run_problem``, replay), rebuilt into a job directory
(``hither.outside.documents.unpack_job``), run by a ``Launcher`` (``launching.launcher_for``:
the ``job_handler``'s ``job_dir_launcher()``, by default a ``JobServerLauncher``: a fork of a
warm job server per job, in a process group of its own), and its outcome packed
(``pack_outputs``: arrays and files into the store) and written back. Up to ``capacity``
jobs run at once, each from a thread (``workers=``, else the launcher's ``capacity``, else
the ``job_handler``'s ``num_workers``, else 1)::

    db = hi.Database(mongo_url="mongodb://127.0.0.1:27017", database="hither")
    cr = hi.ComputeResource(database=db, compute_resource_id="resource1",
                            job_handler=hi.ParallelJobHandler(num_workers=4))
    cr.clear()
    cr.run()        # until cr.stop(), SIGINT or SIGTERM; unfinished jobs go back to the queue

With ``job_handler=hi.SlurmJobHandler(...)`` the job directories run in its pilot batches
(``hither-remote serve --handler slurm``), container jobs included; otherwise a job that asks
for a container runs here through ``resource_containers.ResourceLauncher``.

The resource sleeps until the bus's change stream says a job was inserted for it, handed
back or asked to cancel, or one of its own jobs ends (``hither_remote.wakeups``); it claims
the announced jobs by id in one batch (``Bus.claim_ids``), and queries its queue only when
polling, once a second as a safety net, or while the last query found more than fitted.
Up to ``prefetch`` (= ``capacity``) more jobs than ``capacity`` are claimed when the
launcher limits how many run at once, so jobs are unpacked and written back while others
run; a job holds a short lease until it starts (``hither_remote.waiting``), and while
another live serving process of the same resource id has a free worker (its heartbeat says
so) none is claimed ahead and those that cannot start here now are handed back to it;
while every worker is busy, claims wait until half of that room is free (one claim round
for several jobs). The run records of a whole claim round are taken in one bulk write
(``Bus.begin_runs``: a job whose run already ended, a replayed document, is refused; one
whose run is still going elsewhere, its status set back to ``queued`` on the bus, is left to
that run), and the outcomes of jobs that end within ~20 ms of each other are written in
one bulk write, their run records marked done after (``hither_remote.ending``). A started job's lease of ``lease_seconds`` is
renewed while it runs; when this process dies, the lease expires and another (or a
restarted) process runs the job again.
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, Optional

from hither.errors import ConfigError, JobTimeoutError
from hither.plugins.interfaces import Store

from .janitor import Janitor
from .launching import install_stop_signals, launcher_for
from .bus import retry
from .outage import Outage, describe
from .models import BusOutcome, BusStatus, ResourceHeartbeat
from .endpoint import byte_count, endpoint, seconds
from .signing import run_problem
from .waiting import Claimed, StartGate, peer_room, to_give, wait_lease
from .wakeups import ChangeWatcher, changed, resource_pipeline
from .retention import prune_logged

if TYPE_CHECKING:  # pragma: no cover
    from .retention import Retention

logger = logging.getLogger("hither_remote.resource")

#: while change streams wake the resource: how often it still looks at the bus (events can
#: be lost across an outage; expired leases make no event)
SAFETY_POLL = 1.0
#: seconds the loop claims jobs at most before it looks after its heartbeat and leases
CLAIM_TURN = 0.5


class ComputeResource:
    """Serves the jobs sent to ``compute_resource_id`` (see the module docstring).

    ``store``: the content store shared with clients (default ``hither.content.stores.default_store()``);
    ``secret``/``secret_file``: the shared secret (default ``$HITHER_REMOTE_SECRET``);
    ``job_cache``: a ``hi.JobCache`` consulted before a job runs and filled after it ran,
    with the client's force_run/cache_failing settings (``hither_remote.resource_cache``);
    ``containers``: run jobs that ask for a container in it (True), refuse them (False), or
    None (default): run them when a container runner for the image is installed and its
    engine answers here, else refuse them saying why (``hither_remote.resource_containers``);
    ``container_engine``/``container_options``: as ``hi.Config``'s, the resource's own
    (network ``none`` unless these say otherwise);
    ``kachery``: accepted for old scripts and ignored (the store replaces kachery);
    ``workers``: jobs run at once (see ``launcher_for``); ``change_streams=False``: poll
    the bus every ``poll_interval`` s instead of waking on its change stream (what happens
    by itself on a server without change streams); ``retention``: a
    ``hither_remote.retention.Retention`` applied to this resource's part of the bus at
    start and every ``prune_every`` s (None: nothing is removed but by ``clear()``)."""

    def __init__(self, database: Any, compute_resource_id: str, job_handler: Any = None,
                 job_cache: Any = None, store: Optional[Store] = None, *, secret: Any = None,
                 secret_file: Optional[str] = None, workers: Optional[int] = None,
                 lease_seconds: float = 30.0, poll_interval: float = 0.05,
                 work_dir: Optional[str] = None, inline_max_bytes: Optional[int] = None,
                 containers: Optional[bool] = None, container_engine: Optional[str] = None,
                 container_options: Any = None, kachery: Any = None,
                 change_streams: bool = True, retention: Optional["Retention"] = None,
                 prune_every: float = 600.0) -> None:
        from .bus import Bus

        me = "ComputeResource"
        self.lease_seconds = seconds(me, "lease_seconds", lease_seconds)
        self.poll_interval = seconds(me, "poll_interval", poll_interval)
        self.inline_max_bytes = byte_count(me, "inline_max_bytes", inline_max_bytes)
        self.compute_resource_id, self._secret, store = endpoint(me, compute_resource_id, secret, secret_file, store)
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"ComputeResource(workers=...) needs a positive integer, got {workers!r}")
        host, workers = launcher_for(job_handler, workers)
        from .hiding import secret_env_names

        #: environment variables no job may see (the launcher's job server starts without them)
        self.hidden_env = secret_env_names(self._secret)
        hidden = getattr(host, "hidden_env", None)
        if isinstance(hidden, list):
            hidden.extend(n for n in self.hidden_env if n not in hidden)
        else:
            logger.info("%r keeps no environment variables from its jobs: serve them from "
                        "`hither-remote serve` (which drops the secret's) or without $%s set",
                        host, "HITHER_REMOTE_SECRET")
        self.store = store
        self.job_handler = job_handler
        self.job_cache = job_cache
        from .resource_cache import ResourceCache

        self._cache = None if job_cache is None else ResourceCache(job_cache, store, compute_resource_id,
                                                                   inline_max_bytes)
        if kachery is not None:
            logger.info("kachery=%r is ignored: jobs' data travel through the content store", kachery)
        self.capacity = workers
        # a launcher that runs only so many at once lets the next jobs be claimed and
        # unpacked while others run (their outcomes written while the next ones run)
        self.prefetch = workers if host.capacity is not None else 0
        self._peer_idle = False  # a live serving process of this resource id has a free worker
        #: the lease of a claimed job until it starts (``hither_remote.waiting``)
        self.wait_lease = wait_lease(self.lease_seconds)
        self._gate = StartGate(workers)  # jobs started: one per worker, in the order of claims
        self._reported = 0  # the number of jobs held, as the last heartbeat said
        self.work_dir = work_dir
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.change_streams = change_streams
        self.retention = retention
        self.prune_every = seconds(me, "prune_every", prune_every)
        self.bus = Bus(database, secret=self._secret)  # it signs the outcomes it writes
        self._outage = Outage(self.bus, compute_resource_id)  # how the loop rides out an outage
        self._outage.down = not self.bus.ensure_indexes()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by the change stream, a finished job, stop()
        self._cancel_due = False  # a cancel request may be waiting: look at once
        self._look_all = True  # jobs may be queued that no event told of: query the bus
        #: job ids events told of -> the job's document when an insert event carried it
        self._candidates: "OrderedDict[str, Optional[Dict[str, Any]]]" = OrderedDict()
        self._handing_back = False
        self._lock = threading.Lock()
        self._running: Dict[str, Claimed] = {}
        self._started = time.time()
        from .logs import LogShipper
        from .resource_containers import ResourceLauncher

        self._logs = LogShipper(self.bus, compute_resource_id)
        # container jobs in their image here; the others on the handler's launcher
        self._launcher = ResourceLauncher(host, containers, container_engine=container_engine,
                                          container_options=container_options)
        self._janitor = Janitor()
        from .coalesce import Coalescer

        # the run records of jobs whose threads take them (the claim round could not): one write
        self._starts: "Coalescer[str, Optional[str]]" = Coalescer(
            lambda ids: retry(self.bus.begin_runs, ids, self.owner, self.wait_lease,
                                    [self._expiry(i) for i in ids]),
            name="hither-remote-starts")
        from .ending import Ends

        self._ends = Ends(self.bus, self.owner, self._wake)  # outcomes, then run records done

    def __repr__(self) -> str:
        return f"ComputeResource(compute_resource_id={self.compute_resource_id!r}, capacity={self.capacity})"

    # ------------------------------------------------------------------ control
    def clear(self) -> int:
        """Remove this resource's collected, finished jobs from the bus (queued and running
        jobs stay: nothing a client waits for is lost). The number removed."""
        from .logs import clear_logs

        n = self.bus.clear(self.compute_resource_id)
        clear_logs(self.bus, self.compute_resource_id)
        return n

    def stop(self) -> None:
        """Make ``run()`` return (or not start serving): running jobs are stopped and handed
        back to the queue. A stopped resource does not serve again; make a new one."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Serve until ``stop()``, SIGINT or SIGTERM (signals only in the main thread)."""
        restore = install_stop_signals(self._stop, self._wake)
        # _stop is not cleared: a stop() that comes before the loop starts still counts
        self._handing_back = False
        watcher = self._start_watcher()
        logger.info("compute resource %r serving (capacity %d, lease %.1f s, owner %s, %s)",
                    self.compute_resource_id, self.capacity, self.lease_seconds, self.owner,
                    "woken by change streams" if watcher is not None and watcher.watching
                    else f"polling every {self.poll_interval} s")
        last_beat = last_renew = last_cancel_check = last_full = last_prune = 0.0
        try:
            while not self._stop.is_set():
                if self._outage.down and not self._outage.probe(self._stop):  # still down (logged)
                    self._stop.wait(self._outage.wait)
                    continue
                # woken (a job for us, a cancel request, a slot freed) or a poll is due
                woken = self._wake.is_set()
                self._wake.clear()
                watching = watcher is not None and watcher.watching
                try:
                    now = time.monotonic()
                    if now - last_beat >= self._beat_every():
                        self._beat()
                        last_beat = now
                    if now - last_renew >= self.wait_lease / 3:
                        self._renew()
                        last_renew = now
                    if self._cancel_due or now - last_cancel_check >= (SAFETY_POLL if watching else 0.2):
                        self._cancel_due = False
                        self._check_cancels()
                        last_cancel_check = now
                    if not watching or now - last_full >= SAFETY_POLL:
                        self._look_all = True  # polling, or the safety poll is due
                        last_full = now
                    if woken or self._look_all:
                        self._claim_jobs()
                    if self._ends.pending:
                        self._ends.flush()
                    if self._busy_changed() and now - last_beat >= 0.5:
                        self.bus.heartbeat(self._heartbeat_doc(stopped=False))  # peers see it now
                        last_beat = now
                    if self.retention is not None and now - last_prune >= self.prune_every:
                        last_prune = now
                        prune_logged(self.bus, self.compute_resource_id, self.retention)
                except Exception as exc:  # noqa: BLE001 - e.g. a MongoDB outage: carry on
                    self._stop.wait(self._step_failed(exc))
                self._wake.wait(self.poll_interval if not watching else 0.25)
        finally:
            if watcher is not None:
                watcher.stop()
            self._hand_back_all()
            self._logs.close()
            self._launcher.close()
            self._janitor.close()
            self._starts.close()
            self._ends.close()
            restore()
            logger.info("compute resource %r stopped", self.compute_resource_id)

    def _start_watcher(self) -> Optional[ChangeWatcher]:
        """Wake-ups from the bus's change stream: jobs inserted for this resource, jobs
        handed back to the queue or asked to cancel (None: polling, as asked)."""
        if not self.change_streams:
            return None
        def on_change(change: Dict[str, Any]) -> None:
            bus_id, status = changed(change)
            if status == BusStatus.CANCEL_REQUESTED.value:
                self._cancel_due = True
            else:  # a job inserted for us, or handed back: claim it by id (no query)
                inserted = change.get("fullDocument") if change.get("operationType") == "insert" else None
                with self._lock:  # an insert's document spares the claim a read (``Bus.claim_ids``)
                    self._candidates[bus_id] = inserted if isinstance(inserted, dict) else None
            self._wake.set()

        def on_gap() -> None:
            self._cancel_due = self._look_all = True
            self._wake.set()

        return ChangeWatcher(self.bus.jobs, resource_pipeline(self.compute_resource_id), on_change, on_gap,
                             name=self.compute_resource_id).start(
            wait=0.0 if self._outage.down else 5.0)  # an unreachable bus: poll (probing) meanwhile

    def _step_failed(self, exc: Exception) -> float:
        """Log a failed step of the loop in one line; the seconds to wait before the next."""
        import pymongo.errors

        if isinstance(exc, pymongo.errors.ConnectionFailure):  # unreachable, timed out
            return self._outage.failed(exc)  # growing waits, probed while down
        logger.warning("a serving step failed (%s); going on", describe(exc))
        return 1.0

    # ------------------------------------------------------------------ loop steps
    def _beat(self) -> None:
        self.bus.sweep(self.compute_resource_id)
        self.bus.heartbeat(self._heartbeat_doc(stopped=False))
        self._look_at_peers()

    def _renew(self) -> None:
        """Renew the leases: the full one of started jobs, the short one of waiting jobs;
        waiting jobs that cannot start here now go back while a peer has free workers."""
        with self._lock:
            started = [i for i, r in self._running.items() if r.started]
            waiting = [i for i, r in self._running.items() if not r.started]
        self.bus.renew(started, self.owner, self.lease_seconds)
        self.bus.renew(waiting, self.owner, self.wait_lease)
        if waiting:
            self._look_at_peers()

    def _look_at_peers(self) -> None:
        """Read the peers' heartbeats: no claiming ahead while one has a free worker, and
        the waiting jobs it has room for marked to go back (``waiting.to_give``)."""
        since = time.time() - 3 * self._beat_every()
        room = peer_room(self.bus.resource_records(self.compute_resource_id), self.owner, since)
        self._peer_idle = room > 0
        with self._lock:
            waiting = [r for r in self._running.values() if not r.started and not r.give_back]
            started = sum(1 for r in self._running.values() if r.started)
            n = to_give(len(waiting), started, self.capacity, room)
            for r in waiting[len(waiting) - n:] if n else []:  # the last claimed first
                r.give_back = True

    def _busy_changed(self) -> bool:
        """Whether this process went from a free worker to none or back since its last heartbeat."""
        with self._lock:
            held = len(self._running)
        return (held < self.capacity) != (self._reported < self.capacity)

    def _beat_every(self) -> float:
        """Seconds between heartbeats (and lease renewals)."""
        return min(self.lease_seconds / 3, 5.0)

    def _heartbeat_doc(self, stopped: bool) -> ResourceHeartbeat:
        self._reported = len(self._running)
        return ResourceHeartbeat(_id=f"{self.compute_resource_id}/{self.owner}", resource_id=self.compute_resource_id,
                                 owner=self.owner, started=self._started, last_seen=time.time(),
                                 running=len(self._running), capacity=self.capacity, stopped=stopped)

    def _check_cancels(self) -> None:
        with self._lock:
            ids = list(self._running)
        for job_id in self.bus.cancel_requested(ids):
            with self._lock:
                r = self._running.get(job_id)
            if r is None:
                continue
            if not r.cancelled:
                r.cancelled = True
                logger.info("cancel %s (%s)", r.bus_job.function_name, job_id)
            if r.job_dir:  # again at each check: the runner may have started since
                self._launcher.kill(r.job_dir)

    def _claim_jobs(self) -> None:
        """Claim rounds while there is room, for up to ``CLAIM_TURN`` s (then: heartbeat, leases)."""
        turn_ends = time.monotonic() + CLAIM_TURN
        while not self._stop.is_set():
            if time.monotonic() > turn_ends:
                self._wake.set()
                return
            # no claiming ahead while another serving process of this resource has a free worker
            prefetch = 0 if self._peer_idle else self.prefetch
            with self._lock:
                free = self.capacity + prefetch - len(self._running)
            # while every worker has a job and enough are waiting, let the free slots add up:
            # one claim round (and one run-record write) for several jobs, not one per job
            if free <= 0 or (prefetch and len(self._running) >= self.capacity
                             and free < max(1, prefetch // 2)):
                return
            with self._lock:  # the jobs events told of, the oldest first
                told = dict(self._candidates.popitem(last=False) for _ in range(min(free, len(self._candidates))))
            ids = list(told)
            if ids:  # told by the change stream: claimed by id, no query over the queue
                claimed = self.bus.claim_ids(self.compute_resource_id, ids, self.owner, self.wait_lease,
                                             inserted={i: d for i, d in told.items() if d is not None})
            elif self._look_all:
                # a query over the queue: when polling, at the safety poll, after a gap, and
                # while the last one found more jobs than there was room for
                claimed = self.bus.claim_many(self.compute_resource_id, self.owner, self.wait_lease, free)
                self._look_all = len(claimed) >= free
                with self._lock:
                    for bus_job in claimed:
                        self._candidates.pop(bus_job.id, None)
            else:
                return
            if not claimed and not ids:
                return
            with self._lock:  # a job of ours set back to queued and claimed again: one run only
                claimed = [b for b in claimed if b.id not in self._running]
            runs = [Claimed(bus_job) for bus_job in claimed]
            for r in runs:
                r.seq = self._gate.number()
            self._start_runs(runs)
            for r in runs:
                bus_job = r.bus_job
                with self._lock:
                    self._running[bus_job.id] = r
                r.thread = threading.Thread(target=self._run_job, args=(r,), daemon=True,
                                            name=f"hither-remote-{bus_job.id[:8]}")
                r.thread.start()

    def _start_runs(self, runs: "list[Claimed]") -> None:
        """Check the claimed jobs, and take their run records (``Bus.begin_runs``: refused
        when a run ended, a replayed document; left to its runner when a run is still
        going) in one write; if the bus fails here, each job's thread asks itself. The
        record is marked done when the job ends (``ending.Ends``)."""
        for r in runs:
            try:
                r.refusal = run_problem(r.bus_job, self._secret, self.bus.database.database,
                                        self.compute_resource_id)
            except Exception as exc:  # noqa: BLE001 - this document's fault alone
                r.refusal = f"the job document could not be checked ({type(exc).__name__})"
        ok = [r for r in runs if r.refusal is None]
        ended = self._ends.take_ended()
        try:
            others = self.bus.begin_runs([r.bus_job.id for r in ok], self.owner, self.wait_lease,
                                         [r.bus_job.expires for r in ok], ended)
        except Exception as exc:  # noqa: BLE001 - e.g. an outage: the job threads retry
            self._ends.put_back(ended)
            logger.warning("could not record the runs of %d claimed job(s) (%s); retrying per job",
                           len(ok), type(exc).__name__)
            return
        for r, other in zip(ok, others):
            r.checked, r.other_run = True, other

    def _expiry(self, job_id: str) -> Optional[float]:
        with self._lock:
            return r.bus_job.expires if (r := self._running.get(job_id)) is not None else None

    def _hand_back_all(self) -> None:
        self._handing_back = True
        with self._lock:
            running = list(self._running.values())
        for r in running:
            if r.job_dir:
                self._launcher.kill(r.job_dir)
        for r in running:
            if r.thread is not None:
                r.thread.join(30)
        if self._outage.down:  # not worth a server selection timeout: its heartbeat ages out
            logger.warning("the job bus is unreachable: the stop of %s is not recorded on it", self.owner)
            return
        try:
            self.bus.heartbeat(self._heartbeat_doc(stopped=True))
        except Exception:  # noqa: BLE001
            logger.warning("could not record the stop of %s on the bus", self.owner)

    def _end(self, r: Claimed, status: BusStatus, outcome: BusOutcome) -> bool:
        return self._ends.end(r, status, outcome)

    def _free_worker(self, r: Claimed) -> None:
        """The job's process ended: its worker takes the next job (its outcome is written meanwhile)."""
        if r.started and not r.freed:
            r.freed = True
            self._gate.leave()

    # ------------------------------------------------------------------ one job
    def _run_job(self, r: Claimed) -> None:
        bus_job = r.bus_job
        job_id, fname = bus_job.id, bus_job.function_name
        try:
            why = r.refusal
            if why is None:
                other = r.other_run if r.checked else self._starts.call(job_id)
                if other == "":
                    why = "the job already ran to its end once (a replayed document)"
                elif other is not None and other != self.owner:
                    logger.warning("%s (%s) is running at %s (its status on the bus was set back); "
                                   "left to that run", fname, job_id, other)
                    retry(self.bus.hand_over, job_id, self.owner, other, self.lease_seconds)
                    return
            if why is not None:
                logger.warning("refused %s (%s): %s", fname, job_id, why)
                retry(self.bus.refuse, job_id, self.owner, why)
                return
            self._execute(r)
        except Exception as exc:  # noqa: BLE001 - report it to the client if the bus lets us
            logger.exception("job %s (%s) failed on the resource", fname, job_id)
            try:
                retry(self.bus.finish, job_id, self.owner, BusStatus.ERROR,
                                BusOutcome(message=f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001
                logger.warning("could not report the failure of %s; its lease will expire", job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
            self._wake.set()  # a slot is free: claim the next job now

    def _execute(self, r: Claimed) -> None:
        from hither.outside.documents import pack_outputs, unpack_job
        from hither.outside.path import launch

        from .logs import with_console_file

        bus_job = r.bus_job
        job_id, fname = bus_job.id, bus_job.function_name
        spec = bus_job.document.get("spec", {})
        hit = None if self._cache is None else self._cache.lookup(spec, bus_job.cache_policy)
        if hit is not None:
            status = BusStatus.ERROR if "error" in hit else BusStatus.FINISHED
            self._end(r, status, BusOutcome(packed=hit))
            logger.info("end %s (%s): %s, from this resource's job cache", fname, job_id, status.value)
            return
        why = self._launcher.refusal(spec["container"], fname) if spec.get("container") else None
        if why is not None:
            self._end(r, BusStatus.ERROR, BusOutcome(message=why))
            return
        if self.work_dir:
            os.makedirs(self.work_dir, exist_ok=True)
        job_dir = tempfile.mkdtemp(prefix=f"hither-remote-{fname}-", dir=self.work_dir)
        t0 = time.monotonic()
        try:
            unpack_job(with_console_file(bus_job.document), job_dir, self.store,
                       runner=self._launcher.runner_file_needed(spec))
            if not self._take_slot(r) and r.give_back:
                self._give_back(r)
                return
            self._logs.start(job_id, bus_job.attempts, job_dir)
            r.job_dir = job_dir
            if r.cancelled or self._handing_back:
                code: Optional[int] = None
            else:
                logger.info("start %s (%s) attempt %d", fname, job_id, bus_job.attempts)
                timeout = spec.get("timeout")
                self._ends.flight(r, True)
                try:  # core's launch step (None: stopped after the runner wrote its error)
                    code = launch(self._launcher, job_dir, timeout)
                except JobTimeoutError:
                    self._free_worker(r)
                    self._logs.finish(job_id)
                    self._end(r, BusStatus.ERROR, BusOutcome(kind="timeout", message=(
                        f"job {fname} was stopped after job_timeout={timeout} s; raise "
                        "hi.Config(job_timeout=...) if it needs longer")))
                    logger.info("end %s (%s): timeout after %.2f s", fname, job_id, time.monotonic() - t0)
                    return
            self._free_worker(r)
            self._logs.finish(job_id)  # all of the live output, before the outcome
            if self._handing_back and not r.cancelled:
                retry(self.bus.hand_back, job_id, self.owner)
                logger.info("handed back %s (%s)", fname, job_id)
                return
            if r.cancelled:
                self._end(r, BusStatus.CANCELLED, BusOutcome(message="cancelled"))
                logger.info("end %s (%s): cancelled after %.2f s", fname, job_id, time.monotonic() - t0)
                return
            packed = pack_outputs(job_dir, self.store, self.inline_max_bytes)
            status = BusStatus.FINISHED if "result" in packed and "error" not in packed else BusStatus.ERROR
            if self._cache is not None:  # before the client hears of it: its next job may ask
                self._cache.fill(spec, job_dir, code)
            if not self._end(r, status, BusOutcome(packed=packed, exit_code=code)):
                logger.warning("%s (%s) finished, but its lease had passed to another process", fname, job_id)
            logger.info("end %s (%s): %s in %.2f s", fname, job_id, status.value, time.monotonic() - t0)
        finally:
            self._ends.flight(r, False)
            self._free_worker(r)
            self._logs.finish(job_id)
            r.job_dir = None
            self._janitor.remove(job_dir)

    def _take_slot(self, r: Claimed) -> bool:
        """Wait for a free worker (``StartGate``); False (none taken) when the job is to go
        back for a peer, is cancelled or the resource stops meanwhile."""
        def start() -> bool:
            with self._lock:  # _look_at_peers marks only jobs not started
                r.started = not r.give_back
            return r.started

        return self._gate.enter(r, lambda: r.give_back or r.cancelled or self._handing_back, start)

    def _give_back(self, r: Claimed) -> None:
        """Return a job that did not start to the queue for an idle peer (its run record
        released): no longer ours first, so that the event of its return claims nothing here."""
        with self._lock:
            self._running.pop(r.bus_job.id, None)
        retry(self.bus.hand_back, r.bus_job.id, self.owner)
        logger.info("handed %s (%s) back for an idle peer", r.bus_job.function_name, r.bus_job.id)
