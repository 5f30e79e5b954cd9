"""Running one job's function in this process, with console capture and runtime info."""
from __future__ import annotations

from typing import Any, Dict

from .error_info import attach_traceback
from .outcome import Outcome, failed, finished
from .runner import call_function
from .values import prepare_kwargs


def call_captured(fn: Any, kwargs: Dict[str, Any], handler: str = "",
                  no_resolve_input_files: bool = False) -> Outcome:
    """Call ``fn(**kwargs)`` here, capturing its console output; never raises for job errors."""
    try:
        args = prepare_kwargs(kwargs, no_resolve_input_files)
    except Exception as exc:
        return failed(exc, {"handler": handler})
    result, error, tb_text, ri = call_function(fn, args, handler)
    if error is not None:
        return failed(attach_traceback(error, tb_text), ri)
    return finished(result, ri)
