"""Running one job's function in this process, with console capture and runtime info."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .error_info import attach_traceback
from .status import JobStatus
from .runner import call_function
from .values import prepare_kwargs, scan


def check_result(result: Any, error: Optional[BaseException]) -> Optional[BaseException]:
    """A TypeError naming the offending part when a result is not a hither value."""
    if error is None:
        try:
            scan(result, "the result", allow_jobs=False)
        except TypeError as exc:
            return exc
    return error


def call_captured(fn: Any, kwargs: Dict[str, Any], handler: str = "",
                  no_resolve_input_files: bool = False
                  ) -> Tuple[JobStatus, Any, Optional[BaseException], Dict[str, Any]]:
    """Call ``fn(**kwargs)`` here, capturing its console output; never raises for job errors."""
    try:
        args = prepare_kwargs(kwargs, no_resolve_input_files)
    except Exception as exc:
        return JobStatus.ERROR, None, exc, {"handler": handler, "status": JobStatus.ERROR}
    result, error, tb_text, ri = call_function(fn, args, handler)
    if error is not None:
        attach_traceback(error, tb_text)
    error = check_result(result, error)
    status = JobStatus.ERROR if error is not None else JobStatus.FINISHED
    ri["status"] = status
    return status, (None if error is not None else result), error, ri
