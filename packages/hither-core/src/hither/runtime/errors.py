"""A job's error as data: ``error_dict`` (the JSON description written as ``error.json`` and
sent on the bus), ``JobExitError`` (a job that tried to end its process) and printing a crash
of the runtime itself. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import json
import sys
import traceback

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Dict, Optional


def error_dict(exc: BaseException, tb_text: Optional[str] = None) -> Dict[str, Any]:
    """An exception as a JSON-able dict (the fields of ``hither.models.ErrorInfo``)."""
    args = None
    try:
        json.dumps(list(exc.args))
        args = list(exc.args)
    except (TypeError, ValueError):
        pass
    if tb_text is None:
        tb_text = getattr(exc, "remote_traceback", None) or "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__))
    t = type(exc)
    return {"type_module": t.__module__, "type_name": t.__qualname__, "message": str(exc),
            "args_json": args, "traceback": tb_text}


class JobExitError(Exception):
    """A job's function raised SystemExit, KeyboardInterrupt or another exception that is
    not an ``Exception`` (e.g. ``sys.exit(3)``, an argparse error, ``raise KeyboardInterrupt``).
    A job cannot end the program that runs it: this is the job's error, and ``exit_type``
    names what was raised."""

    def __init__(self, message: str, exit_type: str = "") -> None:
        Exception.__init__(self, message, exit_type)
        self.exit_type = exit_type

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# its documented name, wherever this module runs (hither.runtime, or _hither_runtime inside a
# job directory's runner.py): error descriptions name it so, and ``hither.runner`` re-exports
# it, so a description from anywhere rebuilds as ``hi.JobExitError``
JobExitError.__module__ = "hither.runner"


def exit_error(exc: BaseException) -> JobExitError:
    """The ``JobExitError`` for ``exc`` (a non-``Exception`` a job raised), caused by it."""
    t = type(exc)
    name = t.__name__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__qualname__)
    what = "%s(%s)" % (name, ", ".join(repr(a) for a in exc.args))
    hint = (" (it tried to end the process: sys.exit(), exit(), or an argparse error, whose "
            "message is in the job's stderr)" if isinstance(exc, SystemExit) else "")
    err = JobExitError("the job's function raised %s%s; a job cannot end or interrupt the "
                       "program running it, so this is the job's error" % (what, hint), name)
    err.__cause__ = exc
    return err


def print_crash() -> None:
    """The traceback of a crash of the runtime itself, on stderr (never raising)."""
    try:
        traceback.print_exc()
    except BaseException:  # noqa: BLE001
        pass


def flush_std() -> None:
    """Flush stdout and stderr, whatever state they are in (never raising)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
