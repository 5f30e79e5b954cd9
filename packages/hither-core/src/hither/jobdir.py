"""Job directories: how a job crosses a process or machine boundary (containers, Slurm,
compute resources). The runner module (``hither.runner``) executes one; these functions
write it from a ``Job`` and read the outcome back."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from . import runner as _runner
from .errors import JobTimeoutError, WorkerDiedError
from .file import File, file_sha1
from .status import JobStatus

if TYPE_CHECKING:  # pragma: no cover
    from .job import Job

logger = logging.getLogger("hither.jobdir")

RUNNER_SOURCE = _runner.__file__


def _files_dir() -> str:
    """Where files that jobs return outside this process are kept (content-addressed)."""
    base = os.environ.get("HITHER_RESULTS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "hither", "files")
    os.makedirs(base, exist_ok=True)
    return base


def write_job_dir(job: "Job", job_dir: str) -> None:
    """Write ``spec.json``, ``args.json`` (+ arrays, + input files), ``code.zip`` and
    ``runner.py`` for ``job`` into ``job_dir``."""
    from .models import JobSpec

    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
    bundle = job.function.code_bundle()
    spec = JobSpec(job_id=job.id, job_hash=job.job_hash, function_name=job.function_name,
                   function_version=job.function_version, module=bundle.module,
                   qualname=bundle.qualname, module_relpath=bundle.module_relpath,
                   code_hash=bundle.code_hash, container=job.container,
                   timeout=job.config.job_timeout,
                   no_resolve_input_files=job.function.no_resolve_input_files,
                   sys_paths=bundle.sys_paths, extra={"handler": job.handler.name})
    data = spec.model_dump()
    data["handler"] = job.handler.name
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(data, f)
    counter = [0]

    def array_sink(a: Any) -> str:
        import numpy as np

        counter[0] += 1
        rel = f"arrays/arg-{counter[0]}.npy"
        np.save(os.path.join(job_dir, rel), a, allow_pickle=False)
        return rel

    def file_encoder(fobj: File) -> Dict[str, Any]:
        src = fobj.resolve()
        rel = f"files/{file_sha1(src)}/{fobj.name}"
        dest = os.path.join(job_dir, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        try:
            os.link(src, dest)  # same file system: no copy
        except OSError:
            shutil.copyfile(src, dest)
        return {"_hither": "file", "uri": fobj.uri, "path": fobj.path, "local": rel}

    args = _runner.encode_value(job.resolved_kwargs or {}, array_sink, file_encoder)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump(args, f)
    bundle.write_zip(os.path.join(job_dir, "code.zip"))
    shutil.copyfile(RUNNER_SOURCE, os.path.join(job_dir, "runner.py"))


def read_job_outputs(job_dir: str, exit_code: Optional[int] = None
                     ) -> Tuple[JobStatus, Any, Optional[BaseException], Dict[str, Any]]:
    """The outcome a runner left in ``job_dir``: (status, result, error, runtime info)."""
    from .error_info import from_error_info
    from .models import ErrorInfo

    ri: Dict[str, Any] = {}
    rpath = os.path.join(job_dir, _runner.RUNTIME)
    if os.path.exists(rpath):
        with open(rpath) as f:
            ri = json.load(f)
    epath = os.path.join(job_dir, _runner.ERROR)
    if os.path.exists(epath):
        with open(epath) as f:
            info = ErrorInfo(**{k: v for k, v in json.load(f).items() if k in ErrorInfo.model_fields})
        return JobStatus.ERROR, None, from_error_info(info, where=ri.get("host", "")), ri
    res = os.path.join(job_dir, _runner.RESULT)
    if not os.path.exists(res):
        return JobStatus.ERROR, None, WorkerDiedError(
            f"the job's process ended (exit code {exit_code}) without writing a result in {job_dir}: "
            "it was killed or crashed (out of memory? a missing python3 in the image?)"), ri

    def array_source(ref: str) -> Any:
        import numpy as np

        return np.load(os.path.join(job_dir, ref))

    def file_decoder(d: Dict[str, Any]) -> File:
        local = d.get("local")
        src = os.path.join(job_dir, local) if local else d.get("path")
        if not src or not os.path.exists(src):
            return File(uri=d["uri"])
        digest = file_sha1(src)
        name = os.path.basename(src)
        dest_dir = os.path.join(_files_dir(), digest)
        dest = os.path.join(dest_dir, name)
        if not os.path.exists(dest):
            os.makedirs(dest_dir, exist_ok=True)
            tmp = dest + f".tmp{os.getpid()}"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        return File(dest)

    with open(res) as f:
        value = _runner.decode_value(json.load(f)["value"], array_source, file_decoder)
    return JobStatus.FINISHED, value, None, ri


def run_job_dir_subprocess(job_dir: str, timeout: Optional[float] = None,
                           python: Optional[str] = None) -> int:
    """Run a job directory with a Python on this host (``python -m``-free: runner.py itself)."""
    cmd = [python or sys.executable, os.path.join(job_dir, "runner.py"), job_dir]
    proc = subprocess.Popen(cmd, cwd=job_dir)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def run_in_container(job: "Job") -> None:
    """Run ``job`` in its container through the container runner plugin; report the outcome."""
    from . import registry

    image = job.container or ""
    scheme = image.split("://", 1)[0]
    runner_cls = registry.load("container_runners", "singularity" if scheme in ("shub", "library") else scheme)
    job_dir = ""
    try:
        base = os.environ.get("HITHER_TEMP_DIR") or None
        if base:
            os.makedirs(base, exist_ok=True)
        job_dir = tempfile.mkdtemp(prefix=f"hither-job-{job.function_name}-", dir=base)
        write_job_dir(job, job_dir)
        cr = runner_cls()
        job.handler_data = (cr, job_dir)
        try:
            code = cr.run(image, job_dir, timeout=job.config.job_timeout)
        except (TimeoutError, subprocess.TimeoutExpired):
            job.report_error(JobTimeoutError(
                f"job {job.function_name} ({job.id}) in {image} was stopped after "
                f"job_timeout={job.config.job_timeout} s"))
            return
        status, value, error, ri = read_job_outputs(job_dir, code)
        ri["handler"] = job.handler.name
        if error is None:
            job.report_result(value, ri)
        else:
            job.report_error(error, ri)
    except BaseException as exc:  # noqa: BLE001 - any failure here is the job's failure
        job.report_error(exc)
    finally:
        job.handler_data = None
        if job_dir:
            shutil.rmtree(job_dir, ignore_errors=True)
