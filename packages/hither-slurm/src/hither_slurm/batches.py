"""Pilot batches: started with ``sbatch`` (or as local processes with ``use_slurm=False``),
watched with ``squeue``, ended with ``scancel``. No Slurm command runs on the caller's
thread while it holds the handler's lock: ``squeue`` runs on a thread of its own and the
handler reads its last answer; ``sbatch`` (retried with backoff while slurmctld does not
answer) and ``scancel`` run on threads the handler starts."""
from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Dict, Iterable, List, Optional, Tuple

from .errors import SlurmError
from .options import SlurmOptions, sbatch_args, slurm_time
from .workdir import WorkDir

logger = logging.getLogger("hither_slurm.batches")

#: squeue states in which a batch's pilot runs or will run
LIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "RESIZING", "REQUEUED", "SUSPENDED"}
JOB_NAME_PREFIX = "hither-pilot-"
#: squeue states (``squeue -t all``) of a batch that ended for a reason outside it: cancelled
#: (scancel, preemption), its node lost, its start deadline passed. Jobs waiting for such a
#: batch are not at fault: they wait for the next one.
OUTSIDE_ENDS = {"CANCELLED", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "REVOKED"}
#: words of an sbatch failure that passes (slurmctld restarting or unreachable for a moment)
_TRANSIENT = ("unable to contact slurm controller", "socket timed out", "connection refused",
              "temporarily unable", "zero bytes were transmitted", "slurm_persist_conn",
              "did not answer within", "connection reset", "transport endpoint",
              "resource temporarily unavailable", "communication connection failure")

#: squeue reasons (``%r``) of a pending job that Slurm will never start as submitted: the
#: request exceeds what the partition, account or QOS allows, or cannot be met at all
#: (https://slurm.schedmd.com/job_reason_codes.html). Busy-cluster reasons (Priority,
#: Resources, *Grp* limits), holds, begin times and unavailable nodes can still resolve.
NEVER_STARTS = {"PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints",
                "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
                "DependencyNeverSatisfied"}
#: per-job limits of an association or QOS (e.g. QOSMaxCpuPerJobLimit,
#: AssocMaxWallDurationPerJobLimit): this request exceeds them whatever else runs
_PER_JOB_LIMIT = re.compile(r"^(QOS|Assoc)Max\w*PerJob")

_HINTS = {
    "PartitionConfig": "it asks for more than its partition allows (CPUs = num_workers_per_batch x "
                       "num_cores_per_job, memory = mem_per_job x num_workers_per_batch, GPUs): lower "
                       "those, or choose another partition= (see `scontrol show partition`, `sinfo -o '%P %c %m %l'`)",
    "PartitionTimeLimit": "its time limit is above the partition's MaxTime: lower time_limit_per_batch, "
                          "or choose another partition= (see `sinfo -o '%P %l'`)",
    "PartitionNodeLimit": "it needs more nodes than its partition allows: lower num_workers_per_batch "
                          "or choose another partition=",
    "BadConstraints": "its constraints (additional_sbatch_opts, e.g. --constraint) cannot be met by any node",
    "InvalidAccount": "its account= is not valid for you (see `sacctmgr show assoc user=$USER`)",
    "InvalidQOS": "its QOS is not valid (check additional_sbatch_opts --qos=...)",
    "AccountNotAllowed": "its account= may not use this partition",
    "QOSNotAllowed": "its QOS may not use this partition",
    "DependencyNeverSatisfied": "a --dependency in additional_sbatch_opts can never be met",
}


def never_starts(reason: str) -> bool:
    """Whether a pending job with this squeue reason can never start as submitted."""
    return reason in NEVER_STARTS or bool(_PER_JOB_LIMIT.match(reason))


class Batch:
    """One allocation (or local process) running one pilot with ``workers`` slots."""

    def __init__(self, batch_id: str, workers: int, slurm_job_id: Optional[str] = None,
                 proc: "Optional[subprocess.Popen[bytes]]" = None) -> None:
        self.id = batch_id
        self.workers = workers
        self.slurm_job_id = slurm_job_id
        self.proc = proc
        self.alive = True
        self.registered = False  # its pilot has started
        self.started = time.monotonic()
        self.state = ""   # squeue's state and reason, as last seen (Slurm batches)
        self.reason = ""
        self.submitted: Optional[float] = None  # when sbatch (or Popen) returned
        self.error: Optional[BaseException] = None  # why it could not be started

    @property
    def submitting(self) -> bool:
        """Not yet started: sbatch (or Popen) has not returned."""
        return self.submitted is None and self.error is None

    def __repr__(self) -> str:
        where = f"Slurm job {self.slurm_job_id}" if self.slurm_job_id else f"pid {self.proc.pid if self.proc else '?'}"
        return f"<batch {self.id} ({where}){'' if self.alive else ' ended'}>"


def _run(cmd: List[str], timeout: float = 30.0) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} is not installed here: SlurmJobHandler(use_slurm=True) needs the "
                         "Slurm commands (sbatch, squeue, scancel); use use_slurm=False to run the "
                         "pilots as local processes") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(cmd)} did not answer within {timeout} s (is slurmctld up?)") from None
    if proc.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed (exit code {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def transient(exc: SlurmError) -> bool:
    """Whether a Slurm command failed because slurmctld did not answer (worth a retry)."""
    text = str(exc).lower()
    return any(w in text for w in _TRANSIENT)


class Launcher:
    """Starts, watches and cancels the batches of one handler."""

    def __init__(self, opts: SlurmOptions, wd: WorkDir, client: str) -> None:
        self.opts = opts
        self.client = client
        self.wd = wd
        #: how long ``submit`` retries an sbatch that slurmctld does not answer
        self.submit_retry_seconds = 120.0
        self._squeue_lock = threading.Lock()
        self._squeue_thread: Optional[threading.Thread] = None
        self._squeue_started = 0.0  # when the squeue now running (or last run) began
        # (when the last answer's squeue began, its answer): set by the squeue thread only
        self._snapshot: Optional[Tuple[float, Dict[str, Tuple[str, str]]]] = None

    def pilot_command(self, batch_id: str) -> List[str]:
        o = self.opts
        cmd = [o.python or sys.executable, "-m", "hither_slurm.pilot", "--working-dir", self.wd.root,
               "--batch", batch_id, "--client", self.client, "--workers", str(o.num_workers_per_batch),
               "--idle-timeout", str(o.idle_timeout)]
        if o.time_limit_per_batch:
            cmd += ["--end-in", str(o.time_limit_per_batch)]
        return cmd

    def new_batch(self) -> Batch:
        """A batch to start (its folders made); ``submit`` starts it."""
        batch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        os.makedirs(self.wd.path("batches", batch_id), exist_ok=True)
        os.makedirs(self.wd.path("running", batch_id), exist_ok=True)
        with open(self.wd.path("batches", batch_id, "client"), "w") as f:
            f.write(self.client)  # whose batch it is (WorkDir.prune)
        return Batch(batch_id, self.opts.num_workers_per_batch)

    def submit(self, batch: Batch) -> "Tuple[Optional[str], Optional[subprocess.Popen[bytes]]]":
        """Start ``batch``: its Slurm job id (sbatch), or its local pilot process. An sbatch
        slurmctld does not answer is retried with backoff for ``submit_retry_seconds``;
        raises ``SlurmError`` (saying so) when it never answers, at once on other failures."""
        o = self.opts
        bdir = self.wd.path("batches", batch.id)
        cmd = self.pilot_command(batch.id)
        if not o.use_slurm:
            with open(os.path.join(bdir, "pilot.log"), "ab") as log:
                # own session: a Ctrl-C in the terminal reaches the client, which cancels
                try:
                    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
                except OSError as exc:
                    raise SlurmError(f"cannot start a local pilot ({cmd[0]}): {exc}; check "
                                     "SlurmJobHandler(python=...)") from None
            logger.info("started local pilot %s (pid %d)", batch.id, proc.pid)
            return None, proc
        cpus = o.num_workers_per_batch * o.num_cores_per_job
        srun = ["srun", "--ntasks=1", f"--cpus-per-task={cpus}", *o.additional_srun_opts, *cmd]
        script = os.path.join(bdir, "batch.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n# a hither pilot batch (hither-slurm)\nexec " + shlex.join(srun) + "\n")
        sbatch = ["sbatch", *sbatch_args(o, JOB_NAME_PREFIX + batch.id, os.path.join(bdir, "slurm-%j.out")),
                  script]
        out = self._retrying(sbatch)
        job_id = out.strip().split(";")[0]
        logger.info("started batch %s (Slurm job %s)", batch.id, job_id)
        return job_id, None

    def _retrying(self, cmd: List[str]) -> str:
        t0 = time.monotonic()
        delay, tries = 1.0, 0
        while True:
            tries += 1
            try:
                return _run(cmd)
            except SlurmError as exc:
                left = self.submit_retry_seconds - (time.monotonic() - t0)
                if not transient(exc):
                    raise
                if left <= 0:
                    raise SlurmError(
                        f"slurmctld did not take the batch for {time.monotonic() - t0:.0f} s "
                        f"({tries} tries of {cmd[0]}; is the Slurm controller down or restarting? "
                        f"see `scontrol ping`); last error: {exc}") from None
                logger.warning("%s failed (%s): retrying in %.0f s", cmd[0], exc, min(delay, left))
                time.sleep(min(delay, left))
                delay = min(delay * 2, 15.0)

    def log_path(self, b: Batch) -> str:
        name = f"slurm-{b.slurm_job_id}.out" if b.slurm_job_id else "pilot.log"
        return self.wd.path("batches", b.id, name)

    def log_tail(self, b: Batch, chars: int = 2000) -> str:
        try:
            with open(self.log_path(b), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no output)"

    def refresh(self, batches: Iterable[Batch]) -> None:
        """Mark batches whose pilot has ended, from squeue's last answer (never waits for
        Slurm: a new squeue starts on its own thread once the answer is a second old)."""
        batches = [b for b in batches if b.alive]
        for b in batches:
            if b.proc is not None and b.proc.poll() is not None:
                b.alive = False
        slurm = [b for b in batches if b.slurm_job_id and b.alive and b.submitted is not None]
        if not slurm:
            return
        self._squeue_soon()
        snap = self._snapshot
        if snap is None:
            return
        taken, info = snap
        for b in slurm:
            if taken < (b.submitted or 0.0):
                continue  # asked before the batch existed
            b.state, b.reason = info.get(b.slurm_job_id or "", ("", ""))
            if b.state not in LIVE_STATES:
                b.alive = False

    def _squeue_soon(self) -> None:
        with self._squeue_lock:
            running = self._squeue_thread is not None and self._squeue_thread.is_alive()
            if running or time.monotonic() - self._squeue_started < 1.0:
                return
            self._squeue_started = time.monotonic()
            self._squeue_thread = threading.Thread(target=self._squeue, args=(self._squeue_started,),
                                                   daemon=True, name="hither-slurm-squeue")
            self._squeue_thread.start()

    def _squeue(self, started: float) -> None:
        try:
            self._snapshot = (started, squeue_info(all_states=True))
        except SlurmError as exc:
            logger.warning("cannot watch batches: %s", exc)

    def stuck(self, b: Batch) -> Optional[str]:
        """Why a batch still waiting in the Slurm queue will not start: a reason Slurm
        never resolves, or pending past ``pending_timeout``; None while it may still start."""
        if not b.alive or b.state != "PENDING":
            return None
        reason = b.reason.split(",")[0].strip()  # "ReqNodeNotAvail, UnavailableNodes:..."
        waited = time.monotonic() - (b.submitted or b.started)  # not the sbatch retries
        limit = self.opts.pending_timeout
        o = self.opts
        asked = (f"it asks for {o.num_workers_per_batch * o.num_cores_per_job} CPUs"
                 + (f", {o.mem_per_job} x {o.num_workers_per_batch} memory" if o.mem_per_job else "")
                 + (f", time {slurm_time(o.time_limit_per_batch)}" if o.time_limit_per_batch else "")
                 + (f", partition {o.partition}" if o.partition else ""))
        where = f"Slurm batch {b.slurm_job_id} (hither batch {b.id})"
        if never_starts(reason):
            hint = _HINTS.get(reason, "the request exceeds a per-job limit of your account or QOS")
            return (f"{where} can never start: squeue gives the reason {b.reason!r}: {hint}; {asked}. "
                    "The batch was cancelled")
        if limit is not None and waited > limit:
            return (f"{where} waited {waited:.0f} s in the Slurm queue without starting (reason "
                    f"{b.reason!r}), longer than pending_timeout={limit:g} s; {asked}. The batch was "
                    f"cancelled. If the cluster is only busy, raise SlurmJobHandler(pending_timeout=...) "
                    f"(None waits for ever); otherwise see `scontrol show job {b.slurm_job_id}` while it "
                    "waits, and ask for less or another partition=")
        return None

    def cancel_later(self, batches: Iterable[Batch]) -> None:
        """``cancel`` on a thread of its own (the caller does not wait for scancel)."""
        batches = list(batches)
        for b in batches:
            b.alive = False
        threading.Thread(target=self.cancel, args=(batches,), daemon=True, name="hither-slurm-scancel").start()

    def cancel(self, batches: Iterable[Batch]) -> None:
        batches = list(batches)
        ids = [b.slurm_job_id for b in batches if b.slurm_job_id]
        if ids:
            try:
                _run(["scancel", *ids])
            except SlurmError as exc:
                logger.error("could not cancel batches %s: %s", ids, exc)
        for b in batches:
            if b.proc is not None and b.proc.poll() is None:
                b.proc.send_signal(signal.SIGTERM)  # the pilot kills its jobs and exits
        for b in batches:
            if b.proc is not None:
                try:
                    b.proc.wait(10)
                except subprocess.TimeoutExpired:
                    b.proc.kill()
                    b.proc.wait()
            b.alive = False


def squeue_info(all_states: bool = False) -> Dict[str, Tuple[str, str]]:
    """Slurm job id -> (state, reason) of this user's jobs; ``all_states``: with those that
    ended recently (CANCELLED, TIMEOUT, ... for slurmctld's MinJobAge)."""
    out = _run(["squeue", "-h", "-o", "%i|%T|%r", "-u", getpass.getuser()]
               + (["-t", "all"] if all_states else []))
    info = {}
    for line in out.splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3:
            info[parts[0].strip()] = (parts[1].strip(), parts[2].strip())
    return info


def squeue_states() -> Dict[str, str]:
    """Slurm job id -> state of this user's jobs."""
    return {k: v[0] for k, v in squeue_info().items()}


def slurm_available() -> Optional[str]:
    """None when sbatch/squeue work here, else why not."""
    try:
        _run(["sinfo", "-h", "-o", "%t"], timeout=10)
        return None
    except SlurmError as exc:
        return str(exc)
