"""Running one job's function in this process, with console capture and runtime info."""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from hither.values.outcome import Outcome, failed, finished, result_error
from hither.runtime import call_function
from hither.values.grammar import prepare_kwargs


def check_result(result: Any, error: Optional[BaseException], fn_name: str = "the job"
                 ) -> Optional[BaseException]:
    """The job's error: ``error`` if it raised, else what is wrong with ``result`` (see
    ``outcome.result_error``), else None. Never raises for a bad result."""
    return error if error is not None else result_error(result, fn_name)


def call_captured(fn: Any, kwargs: Dict[str, Any], handler: str = "",
                  no_resolve_input_files: bool = False) -> Outcome:
    """Call ``fn(**kwargs)`` here, capturing its console output; never raises for job errors."""
    try:
        args = prepare_kwargs(kwargs, no_resolve_input_files)
    except Exception as exc:
        return failed(exc, {"handler": handler})
    result, error, tb_text, ri = call_function(fn, args, handler)
    if error is not None:
        from hither.values.error_info import attach_traceback  # pydantic: not at import (workers use this module)

        return failed(attach_traceback(error, tb_text), ri)
    return finished(result, ri, getattr(fn, "__qualname__", "the job"))


class _RunningHere(threading.local):
    """The job this thread is running in the program's own process (DefaultJobHandler), so
    that ``hi.wait()`` inside it can refuse to wait for it (two attribute writes per job)."""

    job: Optional[Any] = None


running_here = _RunningHere()
