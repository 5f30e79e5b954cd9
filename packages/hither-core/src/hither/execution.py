"""Running one job's function in this process, with console capture and runtime info."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .status import JobStatus
from .runner import call_function
from .values import prepare_kwargs, scan


def check_result(result: Any, error: Optional[BaseException], fn_name: str = "the job"
                 ) -> Optional[BaseException]:
    """The job's error when ``result`` is not a hither value: ``scan``'s TypeError (or
    FileNotFoundError) naming the offending part, or a TypeError for any other failure while
    checking it (a cycle, nesting too deep). Never raises for a bad result."""
    if error is None:
        try:
            scan(result, "the result", allow_jobs=False)
        except (TypeError, FileNotFoundError) as exc:
            return exc
        except RecursionError as exc:
            return TypeError(f"the result of {fn_name} is nested too deeply or contains itself "
                             "(a cycle), so hither cannot check or send it; return a flatter "
                             f"value without cycles (RecursionError: {exc})")
        except Exception as exc:
            return TypeError(f"the result of {fn_name} could not be checked: "
                             f"{type(exc).__name__}: {exc}")
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
        from .error_info import attach_traceback  # pydantic: not at import (workers use this module)

        attach_traceback(error, tb_text)
    error = check_result(result, error, getattr(fn, "__qualname__", "the job"))
    status = JobStatus.ERROR if error is not None else JobStatus.FINISHED
    ri["status"] = status
    return status, (None if error is not None else result), error, ri
