"""Running one job directory (``run_job_dir``): read its spec and arguments, load the
function, call it, and write ``result.json`` (+ arrays, returned files) or ``error.json``, and
``runtime.json``, each atomically. Stdlib-only, Python >= 3.8 (part of the shipped runtime).

A job directory holds ``spec.json`` (a ``hither.models.JobSpec``), ``args.json`` (+ ``.npy``
files under ``arrays/``), ``code.zip`` (the function's code bundle) and optionally
``files/``. Exit code 0 when the outcome was written (even if the function raised), 3 when
the job directory itself is unusable.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

from . import standin
from .calling import HOST, call_function
from .errors import error_dict
from .jobdir import ERROR, RESULT, RUNTIME, code_dir, returned_file_encoder, write_output
from .loading import load_job_function, set_script_globals
from .processes import Watchdog, become_subreaper, console_to, die_with_launcher, finite_timeout, kill_leftovers
from .wire import decode_value, encode_value

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, Optional, Tuple


def _read_job(job_dir: str) -> Tuple[Dict[str, Any], Any]:
    """The job's spec and its encoded arguments (``OSError``/``ValueError`` if unusable)."""
    with open(os.path.join(job_dir, "spec.json")) as f:
        spec = json.load(f)
    with open(os.path.join(job_dir, "args.json")) as f:
        args_data = json.load(f)
    return spec, args_data


def _array_source(job_dir: str) -> Callable[[str], Any]:
    def array_source(ref: str) -> Any:
        import numpy as np

        return np.load(os.path.join(job_dir, ref), mmap_mode="c")
    return array_source


def _file_decoder(job_dir: str, no_resolve: bool) -> Callable[[Dict[str, Any]], Any]:
    """Input files as their paths in the job directory (or ``hi.File``s, for a function
    declared with ``no_resolve_input_files``)."""
    def file_decoder(d: Dict[str, Any]) -> Any:
        local = d.get("local")
        path = os.path.join(job_dir, local) if local else d.get("path")
        file_cls = getattr(sys.modules.get("hither"), "File", standin._StandInFile)
        if no_resolve:
            try:
                return file_cls(path)
            except Exception:
                return standin._StandInFile(path)
        return path
    return file_decoder


def _array_sink(job_dir: str) -> Callable[[Any], str]:
    """Saves each array of the result as ``arrays/result-<n>.npy``."""
    counter = [0]
    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)

    def array_sink(a: Any) -> str:
        import numpy as np

        counter[0] += 1
        rel = "arrays/result-%d.npy" % counter[0]
        np.save(os.path.join(job_dir, rel), a, allow_pickle=False)
        return rel
    return array_sink


def _start_watchdog(job_dir: str, spec: Dict[str, Any], ri: Dict[str, Any]) -> Optional[Watchdog]:
    """The runner's own stop at ``spec["timeout"]`` (None without a finite one)."""
    timeout = finite_timeout(spec.get("timeout"))
    if timeout is None:
        return None
    watchdog = Watchdog(job_dir, timeout, dict(ri, function_name=spec.get("function_name")))
    watchdog.start()
    return watchdog


def _outcome(job_dir: str, result: Any, error: Optional[BaseException], tb_text: str) -> Dict[str, Any]:
    """The files of the job's outcome by name: ``result.json``, or ``error.json`` (also
    when its result cannot be encoded)."""
    if error is None:
        try:
            value = encode_value(result, _array_sink(job_dir), returned_file_encoder(job_dir))
            return {RESULT: {"value": value}}
        except BaseException as exc:  # noqa: BLE001 - e.g. a result type hither cannot carry
            error, tb_text = exc, traceback.format_exc()
    return {ERROR: error_dict(error, tb_text)}


def run_job_dir(job_dir: str, code_cache: Optional[str] = None, bundle: Optional[str] = None) -> int:
    """Run the job in ``job_dir`` and write its outputs there. Returns the exit code.
    ``code_cache``: a folder where code bundles are unpacked once each, ``bundle`` the sha1
    of this job's (see ``jobdir.code_dir``)."""
    job_dir = os.path.abspath(job_dir)
    die_with_launcher()
    try:
        spec, args_data = _read_job(job_dir)
    except (OSError, ValueError) as exc:
        sys.stderr.write("hither runner: %s is not a usable job directory: %s\n" % (job_dir, exc))
        return 3
    console = (spec.get("extra") or {}).get("console_file")
    if console:
        console_to(os.path.join(job_dir, console))
    standin.install_stand_in()
    become_subreaper()  # orphans of the job's processes come to this runner: see kill_leftovers
    ri = {"host": HOST, "pid": os.getpid(), "handler": spec.get("handler", ""),
          "start_time": time.time()}
    watchdog = _start_watchdog(job_dir, spec, ri)
    try:
        fn = load_job_function(spec, code_dir(job_dir, code_cache, bundle))
        decoder = _file_decoder(job_dir, bool(spec.get("no_resolve_input_files")))
        set_script_globals(fn, spec, lambda d: decode_value(d, _array_source(job_dir), decoder))
        kwargs = decode_value(args_data, _array_source(job_dir), decoder)
    except BaseException as exc:  # noqa: BLE001
        err = error_dict(exc)
        err["stage"] = "load"
        if watchdog is None or watchdog.done():
            write_output(os.path.join(job_dir, ERROR), err)
            ri.update(status="error", stdout="", stderr="")
            write_output(os.path.join(job_dir, RUNTIME), ri)
        return 0
    standin.keep_dir[0] = job_dir
    result, error, tb_text, ri2 = call_function(fn, kwargs, spec.get("handler", ""))
    standin.keep_dir[0] = None
    kill_leftovers()  # every process the job started ends with it, before its outcome is written
    ri.update(ri2)
    outputs = _outcome(job_dir, result, error, tb_text)
    if ERROR in outputs:
        ri["status"] = "error"
    if watchdog is not None and not watchdog.done():
        return 0  # the watchdog has written the timeout as the outcome
    for name, data in outputs.items():
        write_output(os.path.join(job_dir, name), data)
    write_output(os.path.join(job_dir, RUNTIME), ri)
    return 0
