"""The pilot: ``python -m hither_slurm.pilot --working-dir W --batch B --workers N ...``.

One pilot runs per batch (a Slurm allocation, or a local process with ``use_slurm=False``).
It claims queued job directories from the working folder, runs up to ``--workers`` of them
at once through one ``hither.outside.jobserver.JobServer`` (a fresh fork per job, so jobs never
share modules), writes each job's outcome, and exits after ``--idle-timeout`` seconds without
work, or soon after its client (the handler's program) is gone. A job that would not
finish before the batch's end (``--end-in``) is left for another batch. For a job queued
with ``store``, the pilot places the arguments it holds by reference from the working
folder's ``store/`` before the run (arrays of a host job are mapped from the store, not
copied) and leaves the result's arrays and files there after it, on a thread of its own
so a large result does not hold up the other jobs (``hither.outside.documents``): results go
from job to job on the cluster. SIGTERM
(``scancel``) kills its running jobs and exits; their claims stay, and the client
requeues them.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Dict, List, Optional

from hither.outside.jobdir import write_json_atomic
from hither.outside.jobserver import JobEnd, JobServer
from hither.runtime import ERROR, RUNTIME, error_dict
from hither.outside.documents import OUTPUTS, place_stored_inputs, store_outputs

from .container_run import ContainerRun
from .options import END_MARGIN

from .workdir import WorkDir

logger = logging.getLogger("hither_slurm.pilot")



class Pilot:
    def __init__(self, wd: WorkDir, batch: str, workers: int, idle_timeout: float,
                 end_in: Optional[float], client: str, poll: float = 0.02) -> None:
        self.wd = wd
        self.client = client
        self.batch = batch
        self.workers = workers
        self.idle_timeout = idle_timeout
        self.start = time.time()
        self.end_time = self.start + end_in if end_in else None
        self.poll = poll
        self.runs: Dict[str, Any] = {}  # JobRun, or ContainerRun for container jobs
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.slurm_job_id = os.environ.get("SLURM_JOB_ID")
        self.fenced = False  # the client gave this batch up (WorkDir.fence)
        self.store = wd.store()
        self.stored: set = set()  # keys of running jobs whose results go to the store
        self.storing: Dict[str, threading.Thread] = {}  # ended jobs whose results are being stored

    def run(self) -> int:
        if self.wd.fenced(self.batch):  # its client gave this batch up before it started
            logger.warning("batch %s was given up by its client: exiting", self.batch)
            return 0
        info = {"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": self.slurm_job_id,
                "start": self.start, "end_time": self.end_time, "workers": self.workers}
        self.wd.write_json(self.wd.path("pilots", self.batch + ".json"), info)
        server = JobServer().start()
        last_busy = last_check = time.monotonic()
        try:
            while not self.stop.is_set():
                if time.monotonic() - last_check > 2.0:
                    last_check = time.monotonic()
                    if not self.wd.client_alive(self.client):
                        logger.warning("the client of batch %s is gone: stopping", self.batch)
                        break
                    if self.wd.fenced(self.batch):
                        self.fenced = True
                if self.fenced:
                    # the client saw this batch end (scancel: squeue shows it ended before
                    # this pilot gets SIGTERM) and requeued its jobs: run nothing more
                    logger.warning("batch %s was given up by its client: stopping", self.batch)
                    break
                self._collect()
                self._cancels()
                skipped = self._claim(server) if len(self.runs) < self.workers else False
                now = time.monotonic()
                if self.runs or self.storing:
                    last_busy = now
                elif skipped or now - last_busy > self.idle_timeout:
                    break  # idle, or the queue holds only jobs too long for this batch
                self.wake.wait(self.poll)
                self.wake.clear()
        finally:
            server.close()  # kills whatever still runs (SIGTERM): those claims stay, for requeue
            self._collect()
            deadline = time.monotonic() + 20  # within Slurm's KillWait after a SIGTERM
            for t in list(self.storing.values()):
                t.join(max(0.0, deadline - time.monotonic()))
        return 0

    def _claim(self, server: JobServer) -> bool:
        """Claim and start queued jobs while slots are free; True if a job was left because
        it would not fit in this batch's remaining time."""
        skipped = False
        for key in self.wd.queued():
            if not key.startswith(self.client + "."):
                continue  # another handler's job: its own batches run it
            if len(self.runs) >= self.workers:
                break
            entry = self.wd.read_json(self.wd.path("queue", key))
            if entry is None:
                continue  # claimed meanwhile
            timeout = entry.get("timeout")
            if self.end_time is not None and time.time() + (timeout or 0) + END_MARGIN > self.end_time:
                skipped = True
                continue
            if not self.wd.claim(key, self.batch):
                if self.wd.fenced(self.batch):
                    self.fenced = True
                    break
                continue
            if entry.get("store") and not self._place_inputs(key, in_container=bool(entry.get("container"))):
                continue
            env = {"HITHER_SLURM_BATCH": self.batch}
            if self.slurm_job_id:
                env["HITHER_SLURM_JOB_ID"] = self.slurm_job_id
            if entry.get("container"):  # through the node's container runner (hither-container)
                run: Any = ContainerRun(entry["container"], self.wd.job_dir(key), timeout)
            else:
                run = server.submit(self.wd.job_dir(key), timeout=timeout, log=self.wd.log_file(key), env=env)
            run.add_done_callback(lambda _end: self.wake.set())
            self.runs[key] = run
            if entry.get("store"):
                self.stored.add(key)
        return skipped

    def _place_inputs(self, key: str, in_container: bool) -> bool:
        """Put the arguments a claimed job holds by reference into its directory (copies
        for a container, which sees only that directory); on failure (content gone from
        the store) the job ends with that error. True to run it."""
        job_dir = self.wd.job_dir(key)
        try:
            place_stored_inputs(job_dir, self.store, arrays_in_place=not in_container)
            return True
        except Exception as exc:  # noqa: BLE001 - the job's failure, reported as its error
            logger.warning("job %s: cannot place its stored inputs: %s", key, exc)
            err = error_dict(RuntimeError(
                f"an argument of this job is a result held in {self.store.root}, which could not "
                f"be read on {socket.gethostname()}: {type(exc).__name__}: {exc}; was the store "
                "pruned? Run the job that made it again"))
            write_json_atomic(os.path.join(job_dir, ERROR), err)
            write_json_atomic(os.path.join(job_dir, RUNTIME), {"host": socket.gethostname(), "status": "error"})
            self._finish(key, JobEnd(job_dir, 0, "exited"))
            return False

    def _collect(self) -> None:
        for key, run in list(self.runs.items()):
            if not run.done():
                continue
            end = run.wait()
            if end.signal == signal.SIGTERM and not self.stop.is_set():
                # scancel sends SIGTERM to every process of the batch: the job may have got
                # it an instant before this pilot did; then it was lost, not failed
                self.stop.wait(1.0)
            del self.runs[key]
            stored = key in self.stored
            self.stored.discard(key)
            if end.reason in ("shutdown", "server-died") or (self.stop.is_set() and end.reason == "signal"):
                continue  # this pilot is going away: leave the claim for the client to requeue
            if stored:
                t = threading.Thread(target=self._store_and_finish, args=(key, end), daemon=True,
                                     name=f"store-{key}")
                self.storing[key] = t
                t.start()
            else:
                self._finish(key, end)
        for key in [k for k, t in self.storing.items() if not t.is_alive()]:
            del self.storing[key]

    def _store_and_finish(self, key: str, end: Any) -> None:
        error = None
        try:
            store_outputs(self.wd.job_dir(key), self.store)
        except Exception as exc:  # noqa: BLE001 - the job's failure, reported in its outcome
            logger.exception("job %s: could not put its result into %s", key, self.store.root)
            # the job fails: its result was meant to stay on the cluster, and the client
            # must not read it from the job directory instead (nor a packed outcome half made)
            for name in (OUTPUTS, OUTPUTS + ".tmp"):
                try:
                    os.remove(os.path.join(self.wd.job_dir(key), name))
                except OSError:
                    pass
            error = (f"the job ran, but its result could not be put into the store "
                     f"{self.store.root} on {socket.gethostname()}: {type(exc).__name__}: {exc}; "
                     "that folder of the SlurmJobHandler's working_dir must be a writable folder "
                     "with free space (is the disk full?): repair it and run the job again")
        finally:
            try:
                self._finish(key, end, error)
            except Exception:  # noqa: BLE001 - the claim stays: the client requeues it once this batch ends
                logger.exception("job %s: could not record its end in %s", key, self.wd.root)
            self.wake.set()

    def _finish(self, key: str, end: Any, error: Optional[str] = None) -> None:
        outcome = {"exit_code": end.exit_code, "reason": end.reason, "signal": end.signal,
                   "seconds": end.seconds, "batch": self.batch, "slurm_job_id": self.slurm_job_id,
                   "host": socket.gethostname()}
        if error is not None:
            outcome["error"] = error  # the pilot's own failure; the runner's files are not read
        self.wd.finish(key, self.batch, outcome)

    def _cancels(self) -> None:
        keys: List[str] = [k for k in self.wd.cancel_requests() if k in self.runs]
        for key in keys:
            self.runs[key].kill()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hither_slurm.pilot", description=__doc__.splitlines()[0])
    ap.add_argument("--working-dir", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--client", required=True, help="the handler whose jobs this pilot runs")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--end-in", type=float, default=None, help="seconds until the batch ends")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pilot %(message)s")
    pilot = Pilot(WorkDir(a.working_dir), a.batch, a.workers, a.idle_timeout, a.end_in, a.client)

    def on_term(signum: int, _frame: object) -> None:
        logger.info("signal %d: stopping (running jobs are killed and requeued by the client)", signum)
        pilot.stop.set()
        pilot.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    code = pilot.run()
    logger.info("batch %s: pilot exits", a.batch)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
