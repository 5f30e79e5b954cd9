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
    # a script's definitions run as __hither_main__ in a job directory: __main__ to the caller
    module = "__main__" if t.__module__ == "__hither_main__" else t.__module__
    return {"type_module": module, "type_name": t.__qualname__, "message": str(exc),
            "args_json": args, "attrs_json": _json_attributes(exc), "traceback": tb_text}


def _json_attributes(exc: BaseException) -> Optional[Dict[str, Any]]:
    """The exception's own attributes (``self.code = code``) that are JSON-able, so that
    the receiver rebuilds it with them; None when it has none. Never unpickled anywhere: a
    job directory or a bus document may come from a container or another machine."""
    try:
        items = list(vars(exc).items())
    except TypeError:  # no __dict__ (slots only)
        return None
    attrs = {}
    for key, value in items:
        if key == "remote_traceback" or not isinstance(key, str):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            continue
        attrs[key] = value
    return attrs or None


def find_class(module: str, qualname: str) -> Any:
    """The object ``module.qualname`` (importing the module)."""
    import importlib

    obj = importlib.import_module(module)  # type: Any
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def rebuild_exception(module: str, qualname: str, args: Any, attrs: Dict[str, Any]) -> BaseException:
    """The exception of class ``module.qualname`` with ``args`` and attributes ``attrs``,
    made without calling its constructor, as unpickling does (the other end of
    ``pickle_exception``). Raises when the class is not importable here."""
    cls = find_class(module, qualname)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise TypeError("%s.%s is not an exception class" % (module, qualname))
    exc = cls.__new__(cls, *args)
    exc.args = tuple(args)
    for key, value in attrs.items():
        try:
            setattr(exc, key, value)
        except Exception:  # noqa: BLE001 - a read-only property: the rest still applies
            pass
    return exc


def pickle_exception(exc: BaseException) -> bytes:
    """``exc`` pickled as its class's name, its args and its attributes, for an exception
    whose own pickling fails (a constructor taking other arguments than ``args``). Only
    between processes of one program (the ParallelJobHandler's workers): never for a job
    directory or a bus document. Raises when its args or attributes do not pickle."""
    import io
    import pickle

    t = type(exc)
    module = "__main__" if t.__module__ == "__hither_main__" else t.__module__
    attrs = {k: v for k, v in getattr(exc, "__dict__", {}).items() if k != "remote_traceback"}
    reduced = (rebuild_exception, (module, t.__qualname__, tuple(exc.args), attrs))

    class _Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is exc:
                return reduced
            if isinstance(obj, type) and obj.__module__ in ("__main__", "__hither_main__"):
                # the caller's script, loaded by value here: its classes go by name
                return find_class, ("__main__", obj.__qualname__)
            return NotImplemented

    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(exc)
    return buf.getvalue()


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
