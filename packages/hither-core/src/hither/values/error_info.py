"""Carrying exceptions across boundaries: to ``ErrorInfo`` and back to the original type."""
from __future__ import annotations

import builtins
import importlib
from typing import Any, Optional

from hither.errors import JobError
from hither.models import ErrorInfo
from hither.runtime import error_dict


def to_error_info(exc: BaseException, tb_text: Optional[str] = None) -> ErrorInfo:
    """Describe ``exc`` (its type, message, constructor args when JSON-able, traceback)."""
    return ErrorInfo(**error_dict(exc, tb_text))


def attach_traceback(exc: BaseException, tb_text: str, where: str = "") -> BaseException:
    """Record the traceback text from where the job ran on ``exc`` (and in its notes)."""
    try:
        exc.remote_traceback = tb_text  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if tb_text and hasattr(exc, "add_note"):
        exc.add_note(f"--- traceback of the job{(' on ' + where) if where else ''} ---\n{tb_text.rstrip()}")
    return exc


def from_error_info(info: ErrorInfo, where: str = "") -> BaseException:
    """Rebuild the exception with its original type where importable, else a ``JobError``."""
    exc: Optional[BaseException] = None
    try:
        if info.type_module == "builtins":
            cls: Any = getattr(builtins, info.type_name)
        else:
            cls = importlib.import_module(info.type_module)
            for part in info.type_name.split("."):
                cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            args = info.args_json if info.args_json is not None else [info.message]
            exc = cls(*args)
            if str(exc) != info.message and info.args_json is None:
                exc = None
    except Exception:
        exc = None
    if exc is None:
        exc = JobError(f"{info.type_module}.{info.type_name}: {info.message}",
                       remote_type=f"{info.type_module}.{info.type_name}", remote_traceback=info.traceback)
    return attach_traceback(exc, info.traceback, where)
