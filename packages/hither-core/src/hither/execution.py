"""Running one job's function in this process, with console capture and runtime info."""
from __future__ import annotations

import os
import socket
import time
import traceback
from typing import Any, Dict, Optional, Tuple

from .console import capture
from .error_info import attach_traceback
from .file import File
from .models import JobStatus, RuntimeInfo
from .values import map_files, scan

_HOST = socket.gethostname()


def prepare_kwargs(kwargs: Dict[str, Any], no_resolve_input_files: bool) -> Dict[str, Any]:
    """Arguments as the function sees them: each ``hi.File`` becomes a local path string."""
    if no_resolve_input_files:
        return kwargs
    return {k: map_files(v, File.resolve) for k, v in kwargs.items()}


def call_captured(fn: Any, kwargs: Dict[str, Any], handler: str = "",
                  no_resolve_input_files: bool = False
                  ) -> Tuple[JobStatus, Any, Optional[BaseException], RuntimeInfo]:
    """Call ``fn(**kwargs)`` here, capturing its console output; never raises for job errors."""
    ri = RuntimeInfo(host=_HOST, pid=os.getpid(), handler=handler, status=JobStatus.RUNNING)
    ri.start_time = time.time()
    result: Any = None
    error: Optional[BaseException] = None
    with capture() as (out, err):
        try:
            result = fn(**prepare_kwargs(kwargs, no_resolve_input_files))
            scan(result, "the result", allow_jobs=False)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the job's error (even SystemExit) is data here
            error = attach_traceback(exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    ri.end_time = time.time()
    ri.stdout, ri.stderr = "".join(out), "".join(err)
    status = JobStatus.ERROR if error is not None else JobStatus.FINISHED
    ri.status = status
    return status, result, error, ri
