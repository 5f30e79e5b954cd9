"""Carrying exceptions across boundaries: to ``ErrorInfo`` and back to the original type."""
from __future__ import annotations

import builtins
import importlib
import linecache
import re
from typing import Any, List, Optional, Type

from hither.errors import JobError
from hither.models import ErrorInfo
from hither.runtime import error_dict


def to_error_info(exc: BaseException, tb_text: Optional[str] = None) -> ErrorInfo:
    """Describe ``exc`` (its type, message, constructor args when JSON-able, traceback)."""
    return ErrorInfo(**error_dict(exc, tb_text))


_FRAME = re.compile(r'^( *)File "([^"]+)", line (\d+), in ')


def with_source_lines(tb_text: str) -> str:
    """``tb_text`` with the source line filled in under each frame that has none where the
    job ran (a function of a notebook cell or of ``exec``'d code, whose file does not exist
    there) but whose source this process knows (``linecache``, as IPython registers cells)."""
    lines = tb_text.split("\n")
    out: List[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        m = _FRAME.match(line)
        if not m:
            continue
        indent = m.group(1)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.startswith(indent + "  ") and not _FRAME.match(nxt):
            continue  # the source line is there
        source = linecache.getline(m.group(2), int(m.group(3))).strip()
        if source:
            out.append(f"{indent}  {source}")
    return "\n".join(out)


def attach_traceback(exc: BaseException, tb_text: str, where: str = "") -> BaseException:
    """Record the traceback text from where the job ran on ``exc`` (and in its notes)."""
    tb_text = with_source_lines(tb_text) if tb_text else tb_text
    try:
        exc.remote_traceback = tb_text  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if tb_text and hasattr(exc, "add_note"):
        exc.add_note(f"--- traceback of the job{(' on ' + where) if where else ''} ---\n{tb_text.rstrip()}")
    return exc


def _error_class(info: ErrorInfo) -> Optional[Type[BaseException]]:
    """The exception class ``info`` names, where importable here (a ``__main__`` script's
    class is this program's ``__main__``, whatever the runner called its module)."""
    module = "__main__" if info.type_module == "__hither_main__" else info.type_module
    cls: Any = builtins if module == "builtins" else importlib.import_module(module)
    for part in info.type_name.split("."):
        cls = getattr(cls, part)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _rebuilt(cls: Type[BaseException], info: ErrorInfo) -> Optional[BaseException]:
    """An instance of ``cls`` with the description's args and attributes, or None. The
    constructor is called with the args; where it takes others (``__init__(self, msg,
    code)`` passing only ``msg`` on), the instance is made without it, as unpickling does."""
    args = info.args_json if info.args_json is not None else [info.message]
    exc: Optional[BaseException]
    try:
        exc = cls(*args)
    except Exception:  # noqa: BLE001 - a constructor that wants other arguments
        exc = None
    if exc is None or (info.args_json is not None and list(exc.args) != list(args)):
        if info.args_json is None:
            return None
        exc = cls.__new__(cls, *args)
        exc.args = tuple(args)
    for key, value in (info.attrs_json or {}).items():
        try:
            setattr(exc, key, value)
        except Exception:  # noqa: BLE001 - a read-only property: the rest still applies
            pass
    if info.args_json is None and str(exc) != info.message:
        return None
    return exc


def from_error_info(info: ErrorInfo, where: str = "") -> BaseException:
    """Rebuild the exception with its original type, args and JSON-able attributes where
    the type is importable here, else a ``JobError`` naming the type and message."""
    exc: Optional[BaseException] = None
    try:
        cls = _error_class(info)
        exc = None if cls is None else _rebuilt(cls, info)
    except Exception:  # noqa: BLE001 - not importable here, or a constructor that fails
        exc = None
    if exc is None:
        exc = JobError(f"{info.type_module}.{info.type_name}: {info.message}",
                       remote_type=f"{info.type_module}.{info.type_name}", remote_traceback=info.traceback)
    return attach_traceback(exc, info.traceback, where)
