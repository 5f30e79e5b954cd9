"""``hi.SlurmJobHandler``: runs jobs in pilot batches on Slurm (or local pilot processes)."""
from __future__ import annotations

import itertools
import logging
import os
import queue
import shutil
import signal
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hither.status import JobStatus
from hither.errors import ConfigError, HitherError, JobTimeoutError, WorkerDiedError
from hither.runtime import ERROR, RESULT
from hither.plugins.interfaces import JobHandler
from hither.plugins.lifetime import shut_down_at_exit
from hither.outside.path import collect, prepare
from hither.outside.documents import OUTPUTS

from .batches import OUTSIDE_ENDS, Batch, Launcher
from .container_run import container_entry
from .entries import Entry
from .errors import AllocationLostError, SlurmError
from .options import END_MARGIN, parse_options
from .workdir import PRUNE_INTERVAL, WorkDir

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

    from .jobdir_launcher import PilotLauncher

logger = logging.getLogger("hither_slurm.handler")

_counter = itertools.count(1)
#: what a signal that killed a job likely means
_SIGNAL_HINTS = {
    "SIGSEGV": "a crash in native code (a C extension, or a stack overflow)",
    "SIGBUS": "a crash in native code, or a memory-mapped file that went away",
    "SIGKILL": "killed: out of memory (the kernel's OOM killer, or Slurm's memory limit "
               "mem_per_job), or by someone",
    "SIGABRT": "aborted by native code (a failed assertion in a C library)",
}
#: batches in a row that may end (cancelled, preempted) before their pilot starts while
#: the jobs waiting for them wait on; the next such end fails those jobs
MAX_OUTSIDE_ENDS = 3


class SlurmJobHandler(JobHandler):
    """Runs jobs on a Slurm cluster, many per allocation.

    Each batch (one ``sbatch`` allocation of ``num_workers_per_batch * num_cores_per_job``
    cores) runs a pilot that claims job directories from ``working_dir`` (a folder this
    machine and the nodes share) and runs ``num_workers_per_batch`` of them at once, each in
    a fresh process. Batches start as the queue grows (up to ``max_simultaneous_batches``)
    and end after ``idle_timeout`` seconds without work, or at ``hi.reset()``/program exit.
    A batch Slurm will never start (e.g. more CPUs than the partition has), or still
    pending after ``pending_timeout`` seconds, is cancelled and its waiting jobs fail with
    a ``SlurmError`` naming squeue's reason. Large results stay in ``working_dir/store``
    and go to the next job there by reference (``hither.values.refs.StoredResult``).
    ``use_slurm=False`` runs the same pilots as local processes::

        jh = hi.SlurmJobHandler(working_dir="/shared/hither", num_workers_per_batch=4,
                                num_cores_per_job=1, time_limit_per_batch=3600)
        with hi.Config(job_handler=jh, job_timeout=600):
            job = sqr.run(x=3)
        assert job.wait() == 9
        job.get_runtime_info().slurm_job_id   # the batch it ran in; log in .log_file
    """

    name = "slurm"
    supports_timeout = True
    needs_code_bundle = True
    containers_run_here = False  # pilots run them, with the runners installed on the nodes

    def __init__(self, working_dir: str, num_workers_per_batch: int = 14, num_cores_per_job: int = 2,
                 time_limit_per_batch: Optional[float] = None,
                 max_simultaneous_batches: Optional[int] = None,
                 additional_srun_opts: Optional[List[str]] = None, use_slurm: bool = True,
                 partition: Optional[str] = None, account: Optional[str] = None,
                 mem_per_job: Optional[str] = None, gpus_per_job: int = 0,
                 additional_sbatch_opts: Optional[List[str]] = None, idle_timeout: float = 60.0,
                 pending_timeout: Optional[float] = 3600.0,
                 python: Optional[str] = None, poll_interval: float = 0.05) -> None:
        self.options = parse_options(
            working_dir=working_dir, num_workers_per_batch=num_workers_per_batch,
            num_cores_per_job=num_cores_per_job, time_limit_per_batch=time_limit_per_batch,
            max_simultaneous_batches=max_simultaneous_batches,
            additional_srun_opts=additional_srun_opts or [], use_slurm=use_slurm,
            partition=partition, account=account, mem_per_job=mem_per_job, gpus_per_job=gpus_per_job,
            additional_sbatch_opts=additional_sbatch_opts or [], idle_timeout=idle_timeout,
            pending_timeout=pending_timeout, python=python, poll_interval=poll_interval)
        self._client = uuid.uuid4().hex[:12]
        try:
            self.wd = WorkDir(self.options.working_dir).create()
            self.wd.reclaim_stale()
            self.wd.prune()  # what ended in this folder before (a reused working_dir)
            self.wd.register_client(self._client)
        except OSError as exc:
            raise ConfigError(f"SlurmJobHandler cannot use working_dir={working_dir!r}: {exc}") from None
        # results stay here, on the cluster's file system, and go to the next job on this
        # folder by reference (hither.values.refs); the client reads them only at get_result()
        self.result_store = self.wd.store()
        self._touched = self._pruned = time.monotonic()
        self._launcher = Launcher(self.options, self.wd, self._client)
        self._lock = threading.RLock()
        self._entries: Dict[str, Entry] = {}  # key -> entry
        self._batches: List[Batch] = []
        self._closed = False
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._launch_error: Optional[BaseException] = None
        self._outside_ends = 0  # batches in a row that ended before their pilot started
        self._trash: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self._cleaner: Optional[threading.Thread] = None
        shut_down_at_exit(self)

    def __repr__(self) -> str:
        o = self.options
        return (f"hi.SlurmJobHandler(working_dir={o.working_dir!r}, num_workers_per_batch="
                f"{o.num_workers_per_batch}, use_slurm={o.use_slurm})")

    # ------------------------------------------------------------------ JobHandler
    def check_config(self, job: "Job") -> None:
        self.check_job(job.function_name, job.config.job_timeout)
        # packaging errors (nested, no source, too large) are refused before this, at .run()
        # (hither.jobs.placement: needs_code_bundle)

    def check_job(self, function_name: str, timeout: Optional[float]) -> None:
        """Raise ``ConfigError`` when this handler cannot run a job of ``function_name``
        with ``timeout`` (shut down, or a timeout no batch could finish)."""
        if self._closed:
            raise ConfigError("this SlurmJobHandler was shut down (hi.reset() or shutdown()); "
                              "create a new one")
        limit = self.options.time_limit_per_batch
        if timeout and limit and timeout > limit:
            raise ConfigError(
                f"{function_name}: job_timeout={timeout} s exceeds this SlurmJobHandler's "
                f"time_limit_per_batch={limit} s, so no batch could finish it; lower the "
                "job_timeout or raise time_limit_per_batch")

    def submit(self, job: "Job", inline: bool) -> None:
        if self._closed:
            raise HitherError("this SlurmJobHandler was shut down (hi.reset()); create a new one")
        key = self._new_key()
        entry = Entry(key, job, job.config.job_timeout, container_entry(job),
                       f"{job.function_name} ({job.id})")
        try:
            # core's outside path writes the job directory into the queue folder (an
            # argument that is a StoredResult of this folder's store goes in as its URIs)
            prepare(job, job_dir=self.wd.job_dir(key))
        except BaseException as exc:  # noqa: BLE001 - the job's failure, not the caller's
            shutil.rmtree(self.wd.job_dir(key), ignore_errors=True)
            job.report_error(exc)
            return
        try:
            self.enqueue(entry)
        except HitherError:
            shutil.rmtree(self.wd.job_dir(key), ignore_errors=True)
            raise

    def cancel(self, job: "Job") -> bool:
        key = job.handler_data
        with self._lock:
            entry = self._entries.get(key) if isinstance(key, str) else None
        if entry is None or not self.cancel_entry(entry):
            return False
        job.report_cancelled()
        return True

    def job_dir_launcher(self) -> "PilotLauncher":
        """A ``Launcher`` that runs prepared job directories through this handler's pilots
        (what a hither-remote compute resource uses): see ``hither_slurm.jobdir_launcher``."""
        from .jobdir_launcher import PilotLauncher

        return PilotLauncher(self)

    # ------------------------------------------------------------------ the queue (both paths)
    def _new_key(self) -> str:
        return f"{self._client}.{next(_counter):06d}"

    def new_entry(self, name: str, timeout: Optional[float], container: Optional[Dict[str, Any]]) -> Entry:
        """An entry for a job directory run for a caller (``jobdir_launcher``), checked by
        ``check_job``; the caller puts the directory at ``wd.job_dir(entry.key)``, then
        ``enqueue``s it and waits on ``entry.done``."""
        self.check_job(name, timeout)
        return Entry(self._new_key(), None, timeout, container, name)

    def enqueue(self, entry: Entry) -> None:
        """Queue an entry whose job directory is in place (``wd.job_dir(entry.key)``)."""
        with self._lock:
            if self._closed:
                raise HitherError("this SlurmJobHandler was shut down (hi.reset()); create a new one")
            if entry.job is not None:
                entry.job.handler_data = entry.key
            self._entries[entry.key] = entry
            self._queue(entry)
            self._ensure_thread()
        self._wake.set()

    def _queue(self, entry: Entry) -> None:
        # a submitted Job's results go to the store; a caller's job directory (a compute
        # resource's) keeps the runner's own outputs, which that caller reads
        self.wd.enqueue(entry.key, entry.timeout, entry.container, store=entry.job is not None)

    def cancel_entry(self, entry: Entry) -> bool:
        """Take a queued entry back, or ask its pilot to kill it (the entry then goes when
        the outcome comes). False if it is no longer the handler's."""
        with self._lock:
            if self._entries.get(entry.key) is not entry:
                return False
            entry.cancelled = True
            if self.wd.dequeue(entry.key):
                self._end(entry, ("cancelled", None))
                self.forget(entry)
            else:
                self.wd.request_cancel(entry.key)
        return True

    def _end(self, e: Entry, end: Tuple[str, Any]) -> None:
        """The end of a job-directory entry, for the caller waiting in ``launch``."""
        if e.done is not None and not e.done.is_set():
            e.end = end
            e.done.set()

    def _fail(self, e: Entry, exc: BaseException, ri: Optional[Dict[str, Any]] = None) -> None:
        self.wd.mark_failed(e.key)
        if e.job is not None:
            e.job.report_error(exc, ri)
        else:
            self._end(e, ("error", exc))

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            entries = list(self._entries.values())
            for e in entries:
                self.wd.dequeue(e.key)
            batches = list(self._batches)
        self._wake.set()
        self._launcher.cancel(batches)
        for e in entries:
            if e.job is not None:
                e.job.report_cancelled()
            else:
                self._fail(e, HitherError("the SlurmJobHandler running this job directory was shut down"))
            self.forget(e)
        self.wd.unregister_client(self._client)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    # ------------------------------------------------------------------ for users
    def prune(self) -> int:
        """Remove what ended from ``working_dir`` (``WorkDir.prune``): done at the start and
        every ``PRUNE_INTERVAL`` seconds."""
        with self._lock:
            live = {b.id for b in self._batches}
        try:
            return self.wd.prune(self._client, live)
        except OSError as exc:
            logger.warning("could not prune %s: %s", self.wd.root, exc)
            return 0

    def batches(self) -> List[Batch]:
        """The batches this handler started that still run (or wait in the Slurm queue)."""
        with self._lock:
            return [b for b in self._batches if b.alive]

    # ------------------------------------------------------------------ the monitor thread
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, daemon=True, name="hither-slurm-monitor")
            self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            try:
                with self._lock:
                    busy = bool(self._entries)
                if busy:
                    self._step()
                if time.monotonic() - self._touched > 10:  # others see this client alive
                    self._touched = time.monotonic()
                    self.wd.touch_client(self._client)
                if time.monotonic() - self._pruned > PRUNE_INTERVAL:
                    self._pruned = time.monotonic()
                    threading.Thread(target=self.prune, daemon=True, name="hither-slurm-prune").start()
            except Exception:  # the loop must survive anything, or every waiter would hang
                logger.exception("SlurmJobHandler monitor error (continuing)")
            self._wake.wait(self.options.poll_interval)
            self._wake.clear()

    def _step(self) -> None:
        claims = self.wd.claims()
        done = set(self.wd.finished())
        with self._lock:
            entries = list(self._entries.values())
        finished = []
        for e in entries:
            if e.key in done:
                outcome = self.wd.outcome(e.key)
                if outcome is not None:
                    finished.append((e, outcome))
                    continue
            batch = claims.get(e.key)
            if batch is not None and e.batch != batch:
                e.batch = batch
                e.claimed = time.monotonic()
                if e.job is not None:
                    self._report_running(e)
        for e, outcome in finished:
            self._finish(e, outcome)
        with self._lock:
            self._launcher.refresh(self._batches)  # squeue's last answer: never waits for Slurm
            # a batch Slurm will never start, or pending past pending_timeout: cancelled, and
            # no other starts; its jobs fail (in _scale) unless a running batch takes them
            stuck = [(b, why) for b in self._batches if not self._registered(b)
                     for why in [self._launcher.stuck(b)] if why]
            if stuck:
                self._launcher.cancel_later([b for b, _ in stuck])
                self._launch_error = SlurmError(stuck[0][1])
                logger.error("%s", stuck[0][1])
            for b in self._batches:
                if not b.alive and not self._registered(b) and not any(b is s for s, _ in stuck):
                    self._ended_unstarted(b)
            dead = {b.id: b for b in self._batches if not b.alive}
            self._batches = [b for b in self._batches if b.alive]
            self._report_pending(entries, claims)
        if dead:
            for key in self._recover(dead):
                claims.pop(key, None)  # requeued: counts as queued when scaling below
        self._scale(claims)

    def _ended_unstarted(self, b: Batch) -> None:
        """A batch ended before its pilot started. Cancelled or preempted while it pended
        (or a node lost): not its jobs' fault, they wait for the next batch (up to
        ``MAX_OUTSIDE_ENDS`` such batches in a row). sbatch failed, or the pilot itself
        failed: the jobs waiting for it fail (``_scale``)."""
        if b.error is not None:
            self._launch_error = b.error
            return
        log = self._launcher.log_path(b)
        never_ran = b.state == "" and not (os.path.exists(log) and os.path.getsize(log))
        if b.slurm_job_id and (b.state in OUTSIDE_ENDS or never_ran):
            self._outside_ends += 1
            if self._outside_ends <= MAX_OUTSIDE_ENDS:
                logger.warning("Slurm batch %s (hither batch %s) ended before its pilot started "
                               "(squeue: %s %s): its jobs wait for a new batch", b.slurm_job_id,
                               b.id, b.state or "gone", b.reason)
                return
            self._launch_error = SlurmError(
                f"{self._outside_ends} Slurm batches in a row ended before their pilot started "
                f"(the last, {b.slurm_job_id}: {b.state or 'gone from squeue'}, reason {b.reason!r}): "
                "they are being cancelled or preempted (see `scontrol show job`, or ask your admins)")
            return
        self.wd.mark_batch_failed(b.id)
        self._launch_error = SlurmError(
            f"the pilot of batch {b.id} ended before it started working; its output "
            f"({log}):\n{self._launcher.log_tail(b)}")

    def _report_pending(self, entries: List[Entry], claims: Dict[str, str]) -> None:
        """Queued jobs say in their runtime info why they wait: the squeue state and reason
        of the batch that is to run them (``pending_reason``)."""
        waiting = [b for b in self._batches if not self._registered(b)]
        why = ""
        if waiting:
            b = waiting[0]
            if b.submitting:
                why = f"hither batch {b.id} is being submitted (sbatch)"
            elif b.slurm_job_id and b.state:
                why = f"Slurm batch {b.slurm_job_id} is {b.state} (reason {b.reason or 'None'})"
        for e in entries:
            if e.job is None or e.key in claims or e.pending == why or not why:
                continue
            e.pending = why
            e.job.merge_runtime_info({"pending_reason": why})

    def _submit(self, batch: Batch) -> None:
        """Start ``batch`` (on its own thread); a batch that cannot start ends with its error."""
        try:
            job_id, proc = self._launcher.submit(batch)
        except Exception as exc:  # noqa: BLE001 - the batch's failure, reported to its jobs
            with self._lock:
                batch.error = exc if isinstance(exc, SlurmError) else SlurmError(
                    f"cannot start batch {batch.id}: {type(exc).__name__}: {exc}")
                batch.alive = False
            self._wake.set()
            return
        with self._lock:
            batch.slurm_job_id, batch.proc = job_id, proc
            batch.submitted = time.monotonic()
            closed = self._closed
        if closed:  # shut down while sbatch ran: shutdown() saw no job id to cancel
            self._launcher.cancel([batch])
        self._wake.set()

    def _report_running(self, e: Entry) -> None:
        if e.job is None:
            return
        info = self.wd.pilot_info(e.batch or "") or {}
        ri = {"host": info.get("host", ""), "slurm_job_id": info.get("slurm_job_id"),
              "batch": e.batch, "log_file": self.wd.log_file(e.key), "start_time": time.time()}
        # a running job shows its batch and its log file in get_runtime_info()
        e.job.report_running({k: v for k, v in ri.items() if v is not None})

    def _finish(self, e: Entry, outcome: Dict[str, Any]) -> None:
        self._end(e, ("outcome", outcome))
        self.forget(e, keep_dir=True)
        if e.requeued and not self.wd.dequeue(e.key):
            # its lost run wrote an outcome after all: a second run must not go on
            self.wd.request_cancel(e.key)
        job = e.job
        if job is None:
            return  # a job directory: the launcher takes it back
        try:
            if e.cancelled or job.is_done():
                return
            reason = outcome.get("reason")
            ri = {"handler": self.name, "slurm_job_id": outcome.get("slurm_job_id"),
                  "batch": outcome.get("batch"), "log_file": self.wd.log_file(e.key)}
            if reason == "timeout":
                job.report_error(JobTimeoutError(
                    f"job {job.function_name} ({job.id}) was killed after running longer than "
                    f"job_timeout={job.config.job_timeout} s in Slurm batch {outcome.get('slurm_job_id') or e.batch}; "
                    "raise hi.Config(job_timeout=...) if it needs longer"), ri)
                return
            if outcome.get("error"):  # its pilot failed it (its result could not be stored)
                job.report_error(HitherError(f"job {job.function_name} ({job.id}): {outcome['error']}"), ri)
                return
            crash = self._crash(e, outcome)
            if crash is not None:
                ri.update(end_time=time.time(), host=outcome.get("host"))
                job.report_error(crash, ri)
                return
            # core's outside path reads the outcome: a result the pilot put into the store
            # stays there as a StoredResult unless download_results
            collect(job, self.wd.job_dir(e.key), outcome.get("exit_code"), self.result_store, ri)
        except BaseException as exc:  # noqa: BLE001 - a failure to read is the job's failure
            job.report_error(exc)
        finally:
            if job.get_status() is JobStatus.ERROR:
                self.wd.mark_failed(e.key)
            self._discard_later(e.key)

    def _crash(self, e: Entry, outcome: Dict[str, Any]) -> Optional[BaseException]:
        """The error of a job whose process ended without writing an outcome (a crash, a
        kill): it names the signal and where it ran, and the hints that apply to it."""
        jd = self.wd.job_dir(e.key)
        if any(os.path.exists(os.path.join(jd, n)) for n in (RESULT, ERROR, OUTPUTS)):
            return None
        code, sig = outcome.get("exit_code"), outcome.get("signal")
        if sig is None and isinstance(code, int) and code < 0:
            sig = -code
        if sig:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            how = f"was killed by {name} (exit code {-sig})"
            hint = _SIGNAL_HINTS.get(name, "")
        else:
            how, hint = f"ended (exit code {code}) without writing a result", ""
        if e.container:
            hint += (f"{'; ' if hint else ''}it ran in the container image "
                     f"{e.container.get('image', '?')}: out of memory, or no python3 in the image?")
        secs = outcome.get("seconds")
        after = f" after {secs:.1f} s" if isinstance(secs, (int, float)) else ""
        return WorkerDiedError(
            f"job {e.name} {how}{after} in Slurm batch {outcome.get('slurm_job_id') or outcome.get('batch')} "
            f"on {outcome.get('host') or '?'}" + (f" ({hint})" if hint else "")
            + f"; its console output is in {self.wd.log_file(e.key)}")

    def _discard_later(self, key: str) -> None:
        """Remove a collected job's directory off the monitor thread (an rmtree of the
        extracted code costs more than the rest of collecting a small job)."""
        with self._lock:
            self._trash.put(key)
            if self._cleaner is None or not self._cleaner.is_alive():
                self._cleaner = threading.Thread(target=self._clean_loop, daemon=True,
                                                 name="hither-slurm-cleaner")
                self._cleaner.start()

    def _clean_loop(self) -> None:
        while True:
            try:
                key = self._trash.get(timeout=5)
            except queue.Empty:
                with self._lock:
                    if self._trash.empty():
                        self._cleaner = None
                        return
                continue
            self.wd.discard(key)

    def forget(self, e: Entry, keep_dir: bool = False) -> None:
        with self._lock:
            self._entries.pop(e.key, None)
        if e.job is None:  # a caller's job directory: the launcher takes it back
            self._end(e, ("cancelled", None))
            return
        if e.job.handler_data == e.key:
            e.job.handler_data = None
        if not keep_dir:
            self.wd.discard(e.key)

    def _registered(self, b: Batch) -> bool:
        """Whether the batch's pilot has started (it writes pilots/<batch>.json first)."""
        if not b.registered:
            b.registered = os.path.exists(self.wd.path("pilots", b.id + ".json"))
            if b.registered:
                self._outside_ends = 0
        return b.registered

    def _recover(self, dead: Dict[str, Batch]) -> List[str]:
        """Jobs claimed by batches that ended: fail a hither job with ``AllocationLostError``
        (an infrastructure failure: its ``hi.Retry`` policy reruns it); requeue a job
        directory once, then fail it. Returns the requeued keys.

        Each dead batch is fenced first (``WorkDir.fence``): squeue shows a scancel'ed
        batch as ended (CG) before its pilot gets SIGTERM, and a pilot that still runs
        would otherwise claim the requeued job again into a batch this handler no longer
        watches, where it would wait for ever."""
        lost = []
        for batch in dead:
            keys = self.wd.fence(batch)
            if keys:
                self.wd.mark_batch_failed(batch)  # its output is kept, for the lost jobs
            with self._lock:
                lost += [(self._entries[k], batch) for k in keys if k in self._entries]
        requeued = []
        for e, batch in lost:
            if self.wd.outcome(e.key) is not None:
                continue  # it finished just before its pilot went: collected next round
            if e.cancelled:
                self.forget(e)
                continue
            info = self.wd.pilot_info(batch) or {}
            where = f"Slurm job {info['slurm_job_id']}" if info.get("slurm_job_id") else f"pilot batch {batch}"
            ran = self._ran_out_of_time(e, dead[batch], info)
            if ran is not None:
                self._fail(e, JobTimeoutError(
                    f"job {e.name} ran {ran:.0f} s until the time limit of its batch ({where}) "
                    f"killed it: time_limit_per_batch={self.options.time_limit_per_batch:g} s, so a "
                    "fresh batch could not finish it either and it was not requeued; raise "
                    "SlurmJobHandler(time_limit_per_batch=...), or give the job a job_timeout (a "
                    "batch then starts it only when it can finish)"),
                    {"batch": batch, "slurm_job_id": info.get("slurm_job_id")})
                self.forget(e)
                continue
            if e.job is not None:
                # a hither job: the job's retry policy (hi.Retry) decides whether it runs again
                self._fail(e, AllocationLostError(
                    f"job {e.name} was lost: the allocation running it ({where}) ended (scancel, "
                    "time limit, node failure or a killed pilot); its retry policy (hi.Retry) "
                    "runs it again while attempts are left; see the batch logs in "
                    f"{self.wd.path('batches', batch)}"), {"batch": batch, "slurm_job_id": info.get("slurm_job_id")})
                self.forget(e)
            elif e.requeued == 0:  # a caller's job directory: requeued once here
                e.requeued += 1
                e.batch, e.claimed = None, None
                logger.warning("%s ended while running %s: requeued once", where, e.name)
                for name in ("result.json", "error.json", "runtime.json", OUTPUTS):
                    try:
                        os.remove(os.path.join(self.wd.job_dir(e.key), name))
                    except FileNotFoundError:
                        pass
                self._queue(e)
                requeued.append(e.key)
            else:
                self._fail(e, AllocationLostError(
                    f"job {e.name} was lost twice: the allocation running it "
                    f"({where}) ended (scancel, time limit, node failure or a killed pilot) after the job "
                    "had already been requeued once; see the batch logs in "
                    f"{self.wd.path('batches', batch)}"), {"batch": batch, "slurm_job_id": info.get("slurm_job_id")})
                self.forget(e)
        return requeued

    def _ran_out_of_time(self, e: Entry, b: Batch, info: Dict[str, Any]) -> Optional[float]:
        """Seconds ``e`` ran when its batch ended at its time limit, if a fresh batch (of
        ``time_limit_per_batch``) could not finish it either; else None (requeue it)."""
        limit = self.options.time_limit_per_batch
        if not limit or e.claimed is None:
            return None
        end = info.get("end_time")
        if b.state != "TIMEOUT" and not (end and time.time() >= float(end) - 1.0):
            return None
        ran = time.monotonic() - e.claimed
        return ran if ran + END_MARGIN >= limit else None

    def _scale(self, claims: Dict[str, str]) -> None:
        """Start batches while queued jobs outnumber the free slots of live batches."""
        o = self.options
        with self._lock:
            if self._closed:
                return
            queued = sum(1 for e in self._entries.values() if e.key not in claims and not e.cancelled)
            if not queued:
                # a launch error (a batch given up, a pilot that never came up) holds back new
                # batches only while the jobs it came with wait: a live batch took them, or
                # they were cancelled; the next jobs start a batch anew, not fail with it
                self._launch_error = None
                return
            busy: Dict[str, int] = {}
            for b in claims.values():
                busy[b] = busy.get(b, 0) + 1
            free = sum(max(0, b.workers - busy.get(b.id, 0)) for b in self._batches)
            limit = o.max_simultaneous_batches or 1_000_000
            # one batch waiting to start at a time: a queue burst does not flood the
            # scheduler with allocations that would find nothing left to do
            starting = any(not self._registered(b) for b in self._batches)
            while queued > free and len(self._batches) < limit and not starting:
                if self._launch_error is not None:
                    break
                starting = True
                try:
                    batch = self._launcher.new_batch()
                except OSError as exc:
                    self._launch_error = SlurmError(f"cannot start a batch in {self.wd.root}: {exc}")
                    break
                self._batches.append(batch)
                # sbatch (retried while slurmctld restarts) runs off this thread and lock
                threading.Thread(target=self._submit, args=(batch,), daemon=True,
                                 name="hither-slurm-sbatch").start()
                free += batch.workers
            error = self._launch_error
            failed = [e for e in self._entries.values() if e.key not in claims] if error and not self._batches else []
        for e in failed:  # no batch can start: fail the queued jobs instead of leaving them hanging
            if self.wd.dequeue(e.key):
                self._fail(e, SlurmError(f"could not start a Slurm batch for {e.name}: {error}"))
                self.forget(e)
        if failed:
            self._launch_error = None  # try again for later jobs
