"""Pilot batches: started with ``sbatch`` (or as local processes with ``use_slurm=False``),
watched with ``squeue``, ended with ``scancel``."""
from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
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


class Launcher:
    """Starts, watches and cancels the batches of one handler."""

    def __init__(self, opts: SlurmOptions, wd: WorkDir, client: str) -> None:
        self.opts = opts
        self.client = client
        self.wd = wd
        self._last_squeue = 0.0

    def pilot_command(self, batch_id: str) -> List[str]:
        o = self.opts
        cmd = [o.python or sys.executable, "-m", "hither_slurm.pilot", "--working-dir", self.wd.root,
               "--batch", batch_id, "--client", self.client, "--workers", str(o.num_workers_per_batch),
               "--idle-timeout", str(o.idle_timeout)]
        if o.time_limit_per_batch:
            cmd += ["--end-in", str(o.time_limit_per_batch)]
        return cmd

    def start(self) -> Batch:
        batch_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        bdir = self.wd.path("batches", batch_id)
        os.makedirs(bdir, exist_ok=True)
        os.makedirs(self.wd.path("running", batch_id), exist_ok=True)
        o = self.opts
        cmd = self.pilot_command(batch_id)
        if not o.use_slurm:
            with open(os.path.join(bdir, "pilot.log"), "ab") as log:
                # own session: a Ctrl-C in the terminal reaches the client, which cancels
                try:
                    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
                except OSError as exc:
                    raise SlurmError(f"cannot start a local pilot ({cmd[0]}): {exc}; check "
                                     "SlurmJobHandler(python=...)") from None
            batch = Batch(batch_id, o.num_workers_per_batch, proc=proc)
        else:
            cpus = o.num_workers_per_batch * o.num_cores_per_job
            srun = ["srun", "--ntasks=1", f"--cpus-per-task={cpus}", *o.additional_srun_opts, *cmd]
            script = os.path.join(bdir, "batch.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\n# a hither pilot batch (hither-slurm)\nexec " + shlex.join(srun) + "\n")
            out = _run(["sbatch", *sbatch_args(o, JOB_NAME_PREFIX + batch_id, os.path.join(bdir, "slurm-%j.out")),
                        script])
            batch = Batch(batch_id, o.num_workers_per_batch, slurm_job_id=out.strip().split(";")[0])
        logger.info("started %r", batch)
        return batch

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

    def refresh(self, batches: Iterable[Batch], force: bool = False) -> None:
        """Mark batches whose pilot has ended (squeue at most once a second)."""
        batches = [b for b in batches if b.alive]
        for b in batches:
            if b.proc is not None and b.proc.poll() is not None:
                b.alive = False
        slurm = [b for b in batches if b.slurm_job_id and b.alive]
        if not slurm or (not force and time.monotonic() - self._last_squeue < 1.0):
            return
        self._last_squeue = time.monotonic()
        try:
            info = squeue_info()
        except SlurmError as exc:
            logger.warning("cannot watch batches: %s", exc)
            return
        for b in slurm:
            b.state, b.reason = info.get(b.slurm_job_id or "", ("", ""))
            if b.state not in LIVE_STATES:
                b.alive = False

    def stuck(self, b: Batch) -> Optional[str]:
        """Why a batch still waiting in the Slurm queue will not start: a reason Slurm
        never resolves, or pending past ``pending_timeout``; None while it may still start."""
        if not b.alive or b.state != "PENDING":
            return None
        reason = b.reason.split(",")[0].strip()  # "ReqNodeNotAvail, UnavailableNodes:..."
        waited = time.monotonic() - b.started
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


def squeue_info() -> Dict[str, Tuple[str, str]]:
    """Slurm job id -> (state, reason) of this user's jobs."""
    out = _run(["squeue", "-h", "-o", "%i|%T|%r", "-u", getpass.getuser()])
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
