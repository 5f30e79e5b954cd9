"""Rows of the event log made from what the recorder saw (on the writer thread): the
arguments summary, runtime info JSON, the error columns, where a job ran."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

#: characters of each stream of console output kept in ``jobs.runtime_info``
CONSOLE_MAX = 64 * 1024
MESSAGE_MAX = 4000          # characters of an error message
TRACEBACK_MAX = 64 * 1024   # characters of a traceback
SUMMARY_MAX = 500           # characters of the arguments summary
_VALUE_MAX = 60             # characters of one scalar argument

HOST_NAME = socket.gethostname()
_ENCODE = json.JSONEncoder(default=str).encode  # made once: json.dumps(default=...) makes one per call

#: the columns of ``jobs`` the recorder writes, in this order
JOB_COLUMNS = ("job_id", "run_id", "function_name", "function_version", "handler", "status",
               "cached", "job_hash", "host", "pid", "created_at", "started_at", "ended_at",
               "updated_at", "error_type", "error_message", "traceback", "batch",
               "pending_reason", "args_summary", "runtime_info")
_COL = {c: i for i, c in enumerate(JOB_COLUMNS)}
(FUNCTION_NAME, FUNCTION_VERSION, HANDLER, CREATED_AT, ARGS_SUMMARY) = (_COL[c] for c in (
    "function_name", "function_version", "handler", "created_at", "args_summary"))
(STATUS, CACHED, JOB_HASH, HOST, PID, STARTED_AT, ENDED_AT, UPDATED_AT, ERROR_TYPE, ERROR_MESSAGE,
 TRACEBACK, BATCH, PENDING_REASON, RUNTIME_INFO) = (_COL[c] for c in (
    "status", "cached", "job_hash", "host", "pid", "started_at", "ended_at", "updated_at", "error_type",
    "error_message", "traceback", "batch", "pending_reason", "runtime_info"))
_KEEP_NEWEST = ("status", "updated_at")  # always the latest value; the rest: the latest known


def upsert_sql() -> str:
    """``INSERT`` of a ``jobs`` row that, for a job already in the log, keeps what it knew
    where this row says nothing (NULL); status and ``updated_at`` always move on."""
    sets = ", ".join("cached = MAX(excluded.cached, cached)" if c == "cached" else
                     f"{c} = excluded.{c}" if c in _KEEP_NEWEST else f"{c} = COALESCE(excluded.{c}, {c})"
                     for c in JOB_COLUMNS[1:])
    marks = ", ".join("?" * len(JOB_COLUMNS))
    return f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({marks}) ON CONFLICT(job_id) DO UPDATE SET {sets}"


_BLANK: List[Any] = [None] * len(JOB_COLUMNS)
_BLANK[CACHED] = 0


def new_row(job_id: str, run_id: str, blank: List[Any] = _BLANK) -> List[Any]:
    row = blank.copy()
    row[0], row[1] = job_id, run_id
    return row


def set_cols(row: List[Any], **cols: Any) -> None:
    for name, value in cols.items():
        row[_COL[name]] = value


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= _VALUE_MAX else value[:_VALUE_MAX] + "...")
    text = repr(value)
    return text if len(text) <= _VALUE_MAX else text[:_VALUE_MAX] + "..."


def describe(value: Any) -> str:
    """A short, bounded description of an argument that never walks a big value: scalars by
    value (truncated), arrays by dtype and shape, containers by length, jobs by id, the
    rest by type name."""
    cls = type(value)
    if value is None or cls in (bool, int, float, str, bytes, complex):
        return _scalar(value)
    if getattr(cls, "_hither_job", False) is True:
        return f"<job {getattr(value, 'id', '?')}>"
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and hasattr(value, "dtype"):
        return f"{cls.__name__}[{getattr(value, 'dtype', '')}{list(shape)}]"
    if cls in (list, tuple, dict, set, frozenset):
        return f"{cls.__name__}[{len(value)}]"
    return cls.__name__  # an Enum, any other object: its repr could be big or slow


_PLAIN = (int, float, bool)


def args_summary(kwargs: Dict[str, Any]) -> str:
    """``name=description, ...`` of a job's arguments, at most ``SUMMARY_MAX`` characters."""
    if len(kwargs) == 1:  # the common small call, quickly
        for name, value in kwargs.items():
            if type(value) in _PLAIN and not (type(value) is int and abs(value) > 10**18):
                text = f"{name}={value!r}"
                if len(text) <= SUMMARY_MAX:
                    return text
    parts: List[str] = []
    size = 0
    for name, value in kwargs.items():
        try:
            part = f"{name}={describe(value)}"
        except Exception:  # a value whose len() or repr fails
            part = f"{name}=<{type(value).__name__}>"
        parts.append(part)
        size += len(part) + 2
        if size > SUMMARY_MAX:
            break
    text = ", ".join(parts)
    return text if len(text) <= SUMMARY_MAX else text[:SUMMARY_MAX] + "..."


def info_dict(info: Any) -> Dict[str, Any]:
    """A handler's runtime info (a dict or a pydantic model) as a plain dict, or {}."""
    if info is None:
        return {}
    if isinstance(info, dict):
        return info
    dump = getattr(info, "model_dump", None)
    if dump is not None:
        try:
            return dict(dump(exclude_unset=True))
        except Exception:
            return {}
    return {}


_SCALARS = (str, int, float, bool, type(None))


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON would write it, in plain Python values (str, int, float, bool,
    None, lists, str-keyed dicts): a str, int or float subclass (an Enum) as its base
    value, a tuple as a list, anything else (or nested deeper than 20) as its text."""
    cls = type(value)
    if cls in _SCALARS:
        return value
    try:
        if isinstance(value, str):
            return value[:]  # an exact str
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if depth < 20:
            if isinstance(value, (list, tuple)):
                return [plain(v, depth + 1) for v in value]
            if isinstance(value, dict):
                return {(k if type(k) is str else str(plain(k, 21))): plain(v, depth + 1) for k, v in value.items()}
        return str(value)
    except Exception:  # a value whose str() fails
        return f"<{cls.__name__}>"


def plain_info(info: Dict[str, Any], extra: Any = None, scalars: Any = _SCALARS) -> Dict[str, Any]:
    """A job's runtime info (``info`` with a handler's report ``extra`` merged) in plain
    values, each console stream cut to ``CONSOLE_MAX`` characters: what the log's writer
    needs, nothing that would keep the program's objects alive."""
    if extra is not None:
        info = {**info, **info_dict(extra)}
    out = {}
    for k, v in info.items():
        if type(k) is not str:
            k = str(plain(k, 21))
        out[k] = v if type(v) in scalars else plain(v)
    return _cut_console(out)


def quick_info(info: Dict[str, Any], extra: Any = None, limit: int = CONSOLE_MAX) -> Dict[str, Any]:
    """:func:`plain_info` for the common case, without a look at each value: a copy of
    ``info`` merged with ``extra``, its status as text, each console stream cut. Its values
    may still be objects: a caller that needs plain values falls back to ``plain_info``."""
    merged = {**info, **extra} if type(extra) is dict else (
        {**info, **info_dict(extra)} if extra is not None else info.copy())
    status = merged.get("status")
    if status is not None and type(status) is not str:
        merged["status"] = plain(status)
    out, err = merged.get("stdout"), merged.get("stderr")
    if (type(out) is str and len(out) > limit) or (type(err) is str and len(err) > limit):
        _cut_console(merged)
    return merged


def _cut_console(info: Dict[str, Any]) -> Dict[str, Any]:
    for k in ("stdout", "stderr"):
        v = info.get(k)
        if type(v) is str and len(v) > CONSOLE_MAX:
            info[k] = _clip(v, CONSOLE_MAX)
    return info


def _clip(text: Any, limit: int) -> Any:
    if isinstance(text, str) and len(text) > limit:
        return text[:limit] + f"\n... ({len(text) - limit} more characters not kept)"
    return text


def runtime_json(info: Dict[str, Any]) -> str:
    """``info`` as JSON, each console stream cut to ``CONSOLE_MAX`` characters; values JSON
    does not know become their text."""
    shown = info
    out, err = info.get("stdout"), info.get("stderr")
    if (type(out) is str and len(out) > CONSOLE_MAX) or (type(err) is str and len(err) > CONSOLE_MAX):
        shown = dict(info)
        for k in ("stdout", "stderr"):
            v = info.get(k)
            if isinstance(v, str) and len(v) > CONSOLE_MAX:
                shown[k] = _clip(v, CONSOLE_MAX)
    try:
        return _ENCODE(shown)
    except Exception:  # e.g. keys that are not strings
        return json.dumps({str(k): str(v) for k, v in list(shown.items())})


_BATCH_KEYS = ("slurm_job_id", "batch", "compute_resource_id", "resource_id")


def batch_of(info: Optional[Dict[str, Any]], handler: Any, container: Optional[str]) -> Optional[str]:
    """The batch a job ran in: its Slurm job (or pilot batch), its remote resource (from
    its runtime ``info``, else its ``handler``), its container image."""
    if info:
        for key in _BATCH_KEYS:
            value = info.get(key)
            if value:
                return str(value)
    value = getattr(handler, "compute_resource_id", None) if handler is not None else None
    if isinstance(value, str) and value:
        return value
    return container if isinstance(container, str) and container else None


def error_cols(error: Optional[BaseException]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(type, message, traceback) of a job's error; the traceback from where it ran when the
    error carries one, else this process's."""
    if error is None:
        return None, None, None
    cls = type(error)
    kind = getattr(error, "remote_type", "") or (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}")
    try:
        message = str(error)
    except Exception:
        message = f"<{cls.__name__}: message not readable>"
    tb = getattr(error, "remote_traceback", "") or ""
    if not tb and error.__traceback__ is not None:
        try:
            tb = "".join(traceback.format_exception(cls, error, error.__traceback__))
        except Exception:
            tb = ""
    return kind, _clip(message, MESSAGE_MAX), _clip(tb, TRACEBACK_MAX) or None


def run_row(run_id: str) -> Tuple[Any, ...]:
    """The ``runs`` row of this program: no environment, a truncated command line."""
    argv = " ".join(sys.argv)
    now = time.time()
    try:
        cwd: Optional[str] = os.getcwd()
    except OSError:  # the folder was removed
        cwd = None
    return (run_id, HOST_NAME, os.getpid(), _clip(argv, 1000), cwd, now, now)
