"""``PilotLauncher``: runs prepared job directories through a SlurmJobHandler's pilots
(``SlurmJobHandler.job_dir_launcher()``), for a process that receives job directories rather
than ``Job`` objects, such as a hither-remote compute resource.

::

    jh = hi.SlurmJobHandler(working_dir="/shared/hither", num_workers_per_batch=4,
                            max_simultaneous_batches=2)
    launcher = jh.job_dir_launcher()          # launcher.capacity == 8
    code = launcher.launch(job_dir, timeout=65)   # from up to 8 threads at once
    outcome = hither.outside.path.read_outcome(job_dir, code)
    launcher.close()

``launch`` moves the directory into the handler's queue (a rename; a copy when the working
folder is on another file system), where it goes the way of a submitted job: batches start
as the queue grows, a pilot claims and runs it (in its container when ``spec.json`` names
one), a lost allocation requeues it once. Then the directory comes back to ``job_dir`` with
the outputs the runner wrote (``result.json``/``error.json``, ``runtime.json`` with the
console output, ``arrays/``, ``outputs/``) and the live console log as ``console.log``. A
job lost twice, or that no batch could start for, gets an ``error.json`` saying so.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from typing import ClassVar, Dict, Optional

from hither.errors import HitherError, JobTimeoutError
from hither.plugins.interfaces import Launcher
from hither.outside.jobdir import write_json_atomic
from hither.runtime import ERROR, RESULT, RUNTIME, error_dict

from .entries import Entry, EntryQueue

logger = logging.getLogger("hither_slurm.jobdir_launcher")

#: what a runner writes into a job directory (``hither.outside.path.read_outcome`` reads them)
_OUTPUT_FILES = (RESULT, ERROR, RUNTIME)
_OUTPUT_DIRS = ("outputs",)
#: seconds ``launch`` waits for a killed job's pilot to confirm before giving it up
KILL_WAIT = 15.0


class PilotLauncher(Launcher):
    """Runs job directories through the pilots of one ``SlurmJobHandler`` (module docstring)."""

    name = "Slurm pilots"
    #: a container job runs in its image on the pilot's node (``container_run``), so a
    #: compute resource in front of these pilots needs no container engine of its own
    runs_containers: ClassVar[bool] = True

    def __init__(self, handler: EntryQueue) -> None:
        self.handler = handler
        o = handler.options
        # the jobs its batches run at once; unbounded batches: as many as are given
        self.capacity = (o.num_workers_per_batch * o.max_simultaneous_batches
                         if o.max_simultaneous_batches else None)
        self._lock = threading.Lock()
        self._runs: Dict[str, Entry] = {}  # caller's job_dir -> entry

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        h = self.handler
        job_dir = os.path.abspath(job_dir)
        spec = _read_spec(job_dir)
        name = f"{spec.get('function_name', 'job')} ({spec.get('job_id', os.path.basename(job_dir))})"
        # the pilot stops the job at its own timeout (the caller's includes a grace)
        job_timeout = spec.get("timeout") or timeout
        image = spec.get("container")
        container = {"image": image, "engine": None, "options": None} if image else None
        entry = h.new_entry(name, job_timeout, container)
        moved = _move_or_copy(job_dir, h.wd.job_dir(entry.key))
        try:
            with self._lock:
                self._runs[job_dir] = entry
            h.enqueue(entry)
            assert entry.done is not None
            killed_at: Optional[float] = None
            while not entry.done.wait(0.5):
                if entry.cancelled and killed_at is None:
                    killed_at = time.monotonic()
                if killed_at is not None and time.monotonic() - killed_at > KILL_WAIT:
                    logger.warning("%s: its pilot did not confirm the kill within %.0f s", name, KILL_WAIT)
                    h.forget(entry)
                    break
        finally:
            with self._lock:
                self._runs.pop(job_dir, None)
            self._take_back(entry, job_dir, moved)
        kind, value = entry.end or ("cancelled", None)
        if kind == "cancelled" or entry.cancelled:
            return -signal.SIGKILL
        if kind == "error" and isinstance(value, BaseException):
            _write_error(job_dir, value)
            return 1
        outcome = value or {}
        _add_runtime(job_dir, {k: outcome.get(k) for k in ("batch", "slurm_job_id") if outcome.get(k)})
        if outcome.get("reason") == "timeout":
            raise JobTimeoutError(f"{name} was killed by its pilot after running longer than "
                                  f"job_timeout={job_timeout} s (Slurm batch "
                                  f"{outcome.get('slurm_job_id') or outcome.get('batch')})")
        code = outcome.get("exit_code")
        return int(code) if code is not None else -1

    def kill(self, job_dir: str) -> None:
        with self._lock:
            entry = self._runs.get(os.path.abspath(job_dir))
        if entry is not None:
            self.handler.cancel_entry(entry)

    def close(self) -> None:
        with self._lock:
            entries = list(self._runs.values())
        for e in entries:
            self.handler.cancel_entry(e)

    def _take_back(self, entry: Entry, job_dir: str, moved: bool) -> None:
        """The job directory back at ``job_dir`` with the runner's outputs and the console log."""
        wd = self.handler.wd
        src = wd.job_dir(entry.key)
        if moved:
            try:
                os.rename(src, job_dir)
            except FileNotFoundError:
                os.makedirs(job_dir, exist_ok=True)
        else:
            for name in _OUTPUT_FILES:
                if os.path.exists(os.path.join(src, name)):
                    shutil.copy2(os.path.join(src, name), os.path.join(job_dir, name))
            arrays = os.path.join(src, "arrays")
            for name in os.listdir(arrays) if os.path.isdir(arrays) else []:
                if name.startswith("result-"):
                    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
                    shutil.copy2(os.path.join(arrays, name), os.path.join(job_dir, "arrays", name))
            for d in _OUTPUT_DIRS:
                if os.path.isdir(os.path.join(src, d)):
                    shutil.copytree(os.path.join(src, d), os.path.join(job_dir, d), dirs_exist_ok=True)
            shutil.rmtree(src, ignore_errors=True)
        wd.discard(entry.key)  # done/ and cancel/ files of the key
        log = wd.log_file(entry.key)
        if os.path.exists(os.path.join(job_dir, "console.log")):  # the runner wrote its own
            try:
                os.remove(log)
            except FileNotFoundError:
                pass
        else:
            try:
                shutil.move(log, os.path.join(job_dir, "console.log"))
            except FileNotFoundError:
                pass


def _read_spec(job_dir: str) -> Dict:
    try:
        with open(os.path.join(job_dir, "spec.json")) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise HitherError(f"{job_dir} is not a prepared job directory (spec.json: {exc})") from None


def _move_or_copy(src: str, dest: str) -> bool:
    """``src`` to ``dest``: renamed (True), or copied when they are on different file systems."""
    try:
        os.rename(src, dest)
        return True
    except OSError:
        shutil.copytree(src, dest, symlinks=True)
        return False


def _write_error(job_dir: str, exc: BaseException) -> None:
    for name in (RESULT, ERROR):
        try:
            os.remove(os.path.join(job_dir, name))
        except FileNotFoundError:
            pass
    write_json_atomic(os.path.join(job_dir, ERROR), error_dict(exc))
    _add_runtime(job_dir, {"status": "error"})


def _add_runtime(job_dir: str, info: Dict) -> None:
    if not info:
        return
    path = os.path.join(job_dir, RUNTIME)
    try:
        with open(path) as f:
            ri = json.load(f)
    except (OSError, ValueError):
        ri = {}
    ri.update(info)
    write_json_atomic(path, ri)
