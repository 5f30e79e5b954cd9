"""The job-directory format: writing a job for the runtime (``hither.runtime``) and reading its outcome.

A job directory holds ``spec.json`` (a ``hither.models.JobSpec``), ``args.json`` (values in
the runner's wire format), ``arrays/`` (``.npy``), ``files/<sha1>/<name>`` (input files),
``code.zip`` (the code bundle) and ``runner.py`` (the runtime, one zip file: see
``hither.runtime.shipping``); a ``__main__`` function's plain-data globals travel in the
spec (``script_globals``, arrays as ``arrays/global-<n>.npy``: see
``hither.outside.script_globals``). The runner writes ``result.json`` (+
``arrays/result-*.npy`` and each returned file as ``outputs/<sha1>/<name>``, which the
reading side puts into the content store) or ``error.json``, and ``runtime.json``.
``hither.outside.path`` drives the whole path. ``write_json_atomic`` (from ``hither.runtime``,
which must run without the rest of hither) is how a process other than the runner writes
such a file into a job directory (an ``error.json`` for a job it could not run).
"""
from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from hither.errors import HitherError, WorkerDiedError
from hither.content.hashing import parse_uri
from hither.values.file import File
from hither.content.folder import clone_or_copy, file_store, touch
from hither.values.outcome import Outcome, failed, finished, rebuild_error
from hither.runtime import ERROR, RESULT, RUNNER, RUNTIME, decode_value, encode_value, write_runner
from hither.runtime import write_json_atomic  # noqa: F401 - public here

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

logger = logging.getLogger("hither.outside.jobdir")

def array_sink(job_dir: str, prefix: str) -> Callable[[Any], str]:
    """An ``array_sink`` for ``encode_value``: saves each array it is given as
    ``arrays/<prefix>-<n>.npy`` in ``job_dir`` and returns that relative path."""
    counter = [0]

    def sink(a: Any) -> str:
        import numpy as np

        counter[0] += 1
        rel = f"arrays/{prefix}-{counter[0]}.npy"
        os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
        np.save(os.path.join(job_dir, rel), a, allow_pickle=False)
        return rel
    return sink


class NeedsDirectory(Exception):
    """Raised by ``job_in_memory``'s sinks: the job has arrays or files, which are written
    into a job directory."""


def _no_sink(_value: Any) -> Any:
    raise NeedsDirectory()


def job_spec_data(job: "Job", script_globals: Dict[str, Any]) -> Dict[str, Any]:
    """The content of a job directory's ``spec.json`` for ``job``."""
    from hither.models import JobSpec

    bundle = job.function.code_bundle()
    spec = JobSpec(job_id=job.id, job_hash=job.job_hash, function_name=job.function_name,
                   function_version=job.function_version, module=bundle.module,
                   qualname=bundle.qualname, module_relpath=bundle.module_relpath,
                   code_hash=bundle.code_hash, container=job.container,
                   timeout=job.config.job_timeout,
                   no_resolve_input_files=job.function.no_resolve_input_files,
                   sys_paths=bundle.sys_paths, extra={"handler": job.handler.name},
                   script_globals=script_globals)
    data = spec.model_dump()
    data["handler"] = job.handler.name
    return data


def job_in_memory(job: "Job") -> Optional[Tuple[Dict[str, Any], Any]]:
    """``spec.json`` and ``args.json`` of ``job`` as ``write_job_dir`` would write them and
    ``json.load`` read them back, without a directory; None when the job (its arguments or
    a script's globals) holds arrays or files, which need one."""
    try:
        args = encode_value(job.resolved_kwargs or {}, _no_sink, _no_sink)
        script_globals: Dict[str, Any] = {}
        if job.function.code_bundle().module == "__main__":
            from hither.outside.script_globals import collect

            script_globals = collect(job.function, _no_sink)
    except NeedsDirectory:
        return None
    # through JSON as the files would go (tuples become lists, keys strings)
    return json.loads(json.dumps(job_spec_data(job, script_globals))), json.loads(json.dumps(args))


def write_job_dir(job: "Job", job_dir: str, code: bool = True) -> None:
    """Write ``job`` into ``job_dir`` (created if needed) for the runtime; without
    ``code`` leave out ``code.zip`` and ``runner.py`` (a job directory only to be packed
    for another machine, whose code goes to the store straight from the bundle)."""
    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
    bundle = job.function.code_bundle()
    script_globals: Dict[str, Any] = {}
    if bundle.module == "__main__":
        from hither.outside.script_globals import collect

        script_globals = collect(job.function, array_sink(job_dir, "global"))
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(job_spec_data(job, script_globals), f)
    def file_encoder(fobj: File) -> Dict[str, Any]:
        # a clone or a copy of the stored content, never a hard link to it: the job may
        # write to its input file (a container mounts the job directory read-write)
        rel = f"files/{fobj.sha1}/{fobj.name}"
        dest = os.path.join(job_dir, rel)
        if not os.path.exists(dest):
            clone_or_copy(fobj.resolve(), dest)
        return {"_hither": "file", "uri": fobj.uri, "path": fobj.path, "local": rel}

    args = encode_value(job.resolved_kwargs or {}, array_sink(job_dir, "arg"), file_encoder)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump(args, f)
    if code:
        bundle.write_zip(os.path.join(job_dir, "code.zip"))
        write_runner(os.path.join(job_dir, RUNNER))


def returned_file(job_dir: str, node: Dict[str, Any]) -> File:
    """A File the job returned: its copy in the job directory, put into this machine's
    content store (``hither.content.folder.file_store()``, as ``hi.File(path)`` does) and
    verified there against the sha1 the runner recorded. A File returned by URI only (no
    local copy) stays a reference to stored content."""
    local = node.get("local")
    if not local:
        return File.from_uri(node["uri"])
    src = os.path.join(job_dir, local)
    digest, name = parse_uri(node["uri"])
    expected = node.get("sha1") or digest
    store = file_store()
    uri = store.put_file(src, name or os.path.basename(src))  # hashes what it stores
    actual = parse_uri(uri)[0]
    if actual != expected:
        raise HitherError(f"the file {name or os.path.basename(src)} returned by the job "
                          f"changed after the runner recorded it (sha1 {expected}, now {actual}); "
                          "the job directory was modified while being read")
    stored = store.get_path(uri)
    touch(stored)
    return File._stored(uri, stored, path=stored)


def read_job_outputs(job_dir: str, exit_code: Optional[int] = None) -> Outcome:
    """The outcome a runner left in ``job_dir``."""
    ri: Dict[str, Any] = {}
    rpath = os.path.join(job_dir, RUNTIME)
    if os.path.exists(rpath):
        with open(rpath) as f:
            ri = json.load(f)
    epath = os.path.join(job_dir, ERROR)
    if os.path.exists(epath):
        with open(epath) as f:
            info = json.load(f)
        return failed(rebuild_error(info, where=ri.get("host", "")), ri)
    res = os.path.join(job_dir, RESULT)
    if not os.path.exists(res):
        return failed(WorkerDiedError(
            f"the job's process ended (exit code {exit_code}) without writing a result in {job_dir}: "
            "it was killed or crashed (out of memory? a missing python3 in the image?)"), ri)

    def array_source(ref: str) -> Any:
        import numpy as np

        return np.load(os.path.join(job_dir, ref))

    try:
        with open(res) as f:
            value = decode_value(json.load(f)["value"], array_source,
                                         lambda node: returned_file(job_dir, node))
    except Exception as exc:  # noqa: BLE001 - an unreadable result is the job's failure
        return failed(HitherError(f"the result in {job_dir} could not be read: "
                                  f"{type(exc).__name__}: {exc}"), ri)
    return finished(value, ri)
