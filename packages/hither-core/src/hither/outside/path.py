"""The one path for jobs that leave the calling process: prepare, launch, collect.

::

    job ──prepare──▶ job directory ──launch──▶ runner.py (subprocess │ container │
      ▲              (spec, args,              pilot │ remote resource)
      │               code, runner)                    │ writes result/error/runtime
      └───────report◀──collect (read, verify, rebuild)◀┘

Every job that leaves the calling process takes this path, whoever sends it:

- **prepare**: ``prepare(job)`` writes the job directory (``hither.outside.jobdir``) — in a
  temp folder, or a given one (a Slurm queue folder); ``prepare_document(job, store)`` packs
  it for another machine into a document plus store URIs (``hither.outside.documents``),
  which the other side unpacks into a job directory (``documents.unpack_job``).
- **launch**: ``launch(launcher, job_dir, job_timeout)`` — the only step that differs is the
  ``hither.plugins.interfaces.Launcher``: ``SubprocessLauncher`` here, every
  ``ContainerRunner`` (``container_launcher(job)``), the job server
  (``hither.outside.jobserver``), Slurm pilots (``SlurmJobHandler.job_dir_launcher()``).
- **collect**: ``collect(job, job_dir, code, store)`` reads the outcome from the job
  directory (``read_outcome``: a result the job put into a result store where it ran
  stays there as a ``StoredResult`` unless ``download_results``) and reports it to the
  Job through ``hither.values.outcome``; ``collect_document`` does the same for a document
  that came back from another machine.

The Default and Parallel handlers call ``run_outside(job, launcher)`` for the whole path and
``cancel_outside(job)`` to stop it; hither-slurm's handler calls ``prepare`` and ``collect``
around its pilots' queue; hither-remote's handler ``prepare_document`` and
``collect_document``, its compute resource ``documents.unpack_job``, ``launch`` and
``documents.pack_outputs``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional

from hither.errors import JobTimeoutError
from hither.plugins.interfaces import ContainerRunner, Launcher, Store
from hither.outside.jobdir import job_in_memory, read_job_outputs, write_job_dir
from hither.values.outcome import Outcome, failed, finished, report
from hither.values.refs import StoredResult, has_store_refs
from hither.outside.documents import OUTPUTS, outputs_in_memory, pack_job, unpack_outputs
from hither.runtime import ERROR

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

logger = logging.getLogger("hither.outside.path")

#: seconds a launcher waits past the job's timeout, so the runner's own stop (which
#: writes a clear outcome) normally comes first
TIMEOUT_GRACE = 5.0


def job_temp_dir() -> Optional[str]:
    """Where job directories are made: ``$HITHER_TEMP_DIR`` or the system's temp folder."""
    base = os.environ.get("HITHER_TEMP_DIR") or None
    if base:
        os.makedirs(base, exist_ok=True)
    return base


def prepare(job: "Job", base_dir: Optional[str] = None, job_dir: Optional[str] = None,
            code: bool = True) -> str:
    """Write ``job`` into a job directory: ``job_dir`` when given (a pilot's queue folder),
    else a new one under ``base_dir`` or ``job_temp_dir()``. Returns its path; on failure
    nothing is left behind. ``code=False``: without code bundle and runner (see
    ``write_job_dir``)."""
    if job_dir is None:
        job_dir = tempfile.mkdtemp(prefix=f"hither-job-{job.function_name}-", dir=base_dir or job_temp_dir())
    try:
        write_job_dir(job, job_dir, code)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return job_dir


def prepare_document(job: "Job", store: Store, inline_max_bytes: Optional[int] = None) -> Dict[str, Any]:
    """``job`` as one JSON-able document for another machine; arguments, files and code
    that are large go to ``store`` as ``sha1://`` URIs (see ``hither.outside.documents``). The code
    goes to the store from the bundle's zip in memory (made once per bundle), not through
    the job directory: one job after another of a function, that is most of the packing.
    A job without arrays or files (in its arguments or a script's globals) is packed
    without a job directory at all (``jobdir.job_in_memory``)."""
    code_uri = store.put_bytes(job.function.code_bundle().zip_bytes(), name="code.zip")
    in_memory = job_in_memory(job)
    if in_memory is not None:  # no arrays or files: the same document without a directory
        spec, args = in_memory
        return {"spec": spec, "args": args, "code": code_uri}
    job_dir = prepare(job, code=False)
    try:
        return pack_job(job_dir, store, inline_max_bytes, code_uri=code_uri)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def read_outcome(job_dir: str, exit_code: Optional[int] = None, store: Optional[Store] = None,
                 download: bool = False) -> Outcome:
    """The outcome a job left in ``job_dir``: when it ran where ``store`` is and its result
    was put there (``hither.outside.documents.store_outputs`` wrote ``OUTPUTS``), that
    packed outcome (``document_outcome``: a ``StoredResult`` unless ``download``); else
    what the runner wrote (``hither.outside.jobdir.read_job_outputs``)."""
    if store is not None:
        try:
            with open(os.path.join(job_dir, OUTPUTS)) as f:
                doc = json.load(f)
        except FileNotFoundError:  # an error, a crash, or a result not stored
            pass
        else:
            return document_outcome(doc, store, download)
    return read_job_outputs(job_dir, exit_code)


def _job_outcome(job: "Job", job_dir: str, exit_code: Optional[int], store: Optional[Store],
                 runtime_info: Optional[Dict[str, Any]]) -> Outcome:
    outcome = read_outcome(job_dir, exit_code, store, bool(job.config.download_results))
    outcome.runtime_info.update({k: v for k, v in (runtime_info or {}).items() if v is not None})
    outcome.runtime_info.setdefault("handler", job.handler.name)
    return outcome


def collect(job: "Job", job_dir: str, exit_code: Optional[int], store: Optional[Store] = None,
            runtime_info: Optional[Dict[str, Any]] = None) -> Outcome:
    """Read the outcome ``job`` left in ``job_dir`` (``read_outcome``, with the job's
    ``download_results``), add ``runtime_info`` (its None values left out), and report it
    to ``job``."""
    outcome = _job_outcome(job, job_dir, exit_code, store, runtime_info)
    report(job, outcome)
    return outcome


def document_outcome(doc: Dict[str, Any], store: Store, download: bool = False) -> Outcome:
    """The outcome packed by ``documents.pack_outputs`` where the job ran.

    A result whose arrays or files are in ``store`` stays there as a ``StoredResult``
    (read when ``get_result()`` asks, or passed on as a reference to the next job on a
    handler that reads the same store), unless ``download`` (``hi.Config(download_results=
    True)``): then it is fetched now."""
    result = doc.get("result")
    if result is not None and "error" not in doc and not download and has_store_refs(result["value"]):
        return finished(StoredResult(result["value"], store), dict(doc.get("runtime") or {}))
    in_memory = outputs_in_memory(doc)  # no arrays or files: no scratch folder
    if in_memory is not None:
        return in_memory
    scratch = tempfile.mkdtemp(prefix="hither-outcome-", dir=job_temp_dir())
    try:
        return unpack_outputs(doc, scratch, store)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def collect_document(job: "Job", doc: Dict[str, Any], store: Store) -> Outcome:
    """Report the outcome packed by ``documents.pack_outputs`` on another machine (see
    ``document_outcome``)."""
    outcome = document_outcome(doc, store, bool(job.config.download_results))
    report(job, outcome)
    return outcome


def grace(job_timeout: Optional[float]) -> Optional[float]:
    """How long a launcher lets a job run: ``job_timeout`` plus ``TIMEOUT_GRACE``."""
    return None if job_timeout is None else float(job_timeout) + TIMEOUT_GRACE


def launch_timeout(job: "Job") -> Optional[float]:
    """How long a launcher lets ``job`` run: ``grace(job.config.job_timeout)``."""
    return grace(job.config.job_timeout)


def launch(launcher: Launcher, job_dir: str, job_timeout: Optional[float]) -> Optional[int]:
    """Run the prepared ``job_dir`` through ``launcher`` and wait: the step between
    ``prepare`` and ``collect`` every leaving job takes. The launcher lets it run
    ``grace(job_timeout)`` seconds (the runner's own stop at ``job_timeout``, which writes a
    clear outcome, normally comes first). Returns the runner's exit code, or None when
    the launcher stopped a job whose runner had written its outcome (``error.json``);
    raises ``JobTimeoutError`` when it stopped one that had written nothing."""
    try:
        return launcher.launch(job_dir, grace(job_timeout))
    except (JobTimeoutError, subprocess.TimeoutExpired) as exc:
        if os.path.exists(os.path.join(job_dir, ERROR)):
            return None
        if isinstance(exc, JobTimeoutError):
            raise
        raise JobTimeoutError(str(exc)) from None


def launcher_label(launcher: Launcher) -> str:
    """How messages name ``launcher`` ("the docker container runner", "Slurm pilots")."""
    if isinstance(launcher, ContainerRunner):
        return f"the {launcher.name} container runner"
    return launcher.name or "its launcher"


class _Running:
    """What ``cancel_outside`` needs to stop a job on the outside path."""

    def __init__(self, launcher: Launcher, job_dir: str) -> None:
        self.launcher, self.job_dir = launcher, job_dir


def _launched_outcome(job: "Job", launcher: Launcher, job_dir: str) -> Optional[Outcome]:
    """Launch the prepared ``job_dir`` and read its outcome (None: cancelled meanwhile)."""
    try:
        code = launch(launcher, job_dir, job.config.job_timeout)
    except JobTimeoutError:
        if job.is_done():
            return None
        return failed(JobTimeoutError(
            f"job {job.function_name} ({job.id}) was stopped by {launcher_label(launcher)} "
            f"after job_timeout={job.config.job_timeout} s; raise hi.Config(job_timeout=...) "
            "if it needs longer"), {"handler": job.handler.name})
    if job.is_done():  # cancelled: the launcher was killed
        return None
    return _job_outcome(job, job_dir, code, None, None)


def run_outside(job: "Job", launcher: Launcher, base_dir: Optional[str] = None) -> None:
    """Run ``job`` through ``launcher``: ``prepare``, ``launch``, collect, clean up. Reports
    the outcome to the job (after its job directory is gone) and never raises for the
    job's own failures."""
    job_dir = ""
    outcome: Optional[Outcome] = None
    try:
        job_dir = prepare(job, base_dir)
        job.handler_data = _Running(launcher, job_dir)
        if job.is_done():  # cancelled while being prepared
            return
        outcome = _launched_outcome(job, launcher, job_dir)
    except BaseException as exc:  # noqa: BLE001 - any failure here is the job's failure
        outcome = failed(exc, {"handler": job.handler.name})
        if not isinstance(exc, Exception):
            raise
    finally:
        job.handler_data = None
        if job_dir:
            shutil.rmtree(job_dir, ignore_errors=True)
        if outcome is not None:
            report(job, outcome)


def cancel_outside(job: "Job") -> bool:
    """Stop ``job`` if it is on the outside path; report it cancelled. True if it was."""
    running = job.handler_data
    job.report_cancelled()
    if isinstance(running, _Running):
        try:
            running.launcher.kill(running.job_dir)
        except Exception:  # noqa: BLE001 - the job is reported cancelled either way
            logger.exception("could not stop %s (%s)", job.function_name, job.id)
    return True


# ------------------------------------------------------------------ launchers
class SubprocessLauncher(Launcher):
    """Runs the job directory with a Python on this host (``python runner.py DIR``), in a
    process group of its own, so a timeout or a cancel stops every process the job started;
    if the launching process is killed, the runner ends itself and its group."""

    name = "subprocess"

    def __init__(self, python: Optional[str] = None) -> None:
        self.python = python or sys.executable
        self._procs: Dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        # a group of its own (a timeout or cancel kills the job's whole tree), and the runner
        # ends itself with that group if this process dies (HITHER_RUNNER_PARENT)
        env = dict(os.environ, HITHER_RUNNER_PARENT=str(os.getpid()))
        proc = subprocess.Popen([self.python, os.path.join(job_dir, "runner.py"), job_dir],
                                cwd=job_dir, start_new_session=True, env=env)
        with self._lock:
            self._procs[job_dir] = proc
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            raise JobTimeoutError(f"the runner of {job_dir} ran past {timeout} s and was killed") from None
        finally:
            with self._lock:
                self._procs.pop(job_dir, None)
            self._kill_group(proc)  # children the job left behind die with it

    def kill(self, job_dir: str) -> None:
        with self._lock:
            proc = self._procs.get(job_dir)
        if proc is not None:
            self._kill_group(proc)

    @staticmethod
    def _kill_group(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            logger.error("runner pid %s did not die after SIGKILL", proc.pid)


def container_launcher(job: "Job") -> ContainerRunner:
    """The launcher of a container job: the container runner (a ``Launcher``) its
    configuration chooses for its image (``hither.plugins.containers.runner_for``)."""
    from hither.plugins.containers import runner_for

    assert job.container is not None
    return runner_for(job.container, job.config, job.function_name)


__all__ = ["prepare", "prepare_document", "launch", "grace", "launch_timeout", "launcher_label",
           "read_outcome", "collect", "collect_document", "document_outcome", "run_outside",
           "cancel_outside", "SubprocessLauncher", "container_launcher", "job_temp_dir", "TIMEOUT_GRACE"]
