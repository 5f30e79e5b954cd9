"""Pilot batches: started with ``sbatch`` (or as local processes with ``use_slurm=False``),
watched with ``squeue``, ended with ``scancel``."""
from __future__ import annotations

import getpass
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from typing import Dict, Iterable, List, Optional

from .errors import SlurmError
from .options import SlurmOptions, sbatch_args
from .workdir import WorkDir

logger = logging.getLogger("hither_slurm.batches")

#: squeue states in which a batch's pilot runs or will run
LIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "RESIZING", "REQUEUED", "SUSPENDED"}
JOB_NAME_PREFIX = "hither-pilot-"


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
            states = squeue_states()
        except SlurmError as exc:
            logger.warning("cannot watch batches: %s", exc)
            return
        for b in slurm:
            if states.get(b.slurm_job_id or "") not in LIVE_STATES:
                b.alive = False

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


def squeue_states() -> Dict[str, str]:
    """Slurm job id -> state of this user's jobs."""
    out = _run(["squeue", "-h", "-o", "%i %T", "-u", getpass.getuser()])
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def slurm_available() -> Optional[str]:
    """None when sbatch/squeue work here, else why not."""
    try:
        _run(["sinfo", "-h", "-o", "%t"], timeout=10)
        return None
    except SlurmError as exc:
        return str(exc)
