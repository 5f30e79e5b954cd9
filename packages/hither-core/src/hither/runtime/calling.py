"""Calling a job's function: ``call_function`` runs it with its console captured and its
runtime info recorded, turning anything it raises into data; a real Ctrl-C still ends the
program. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback

from .console import end_capture, start_capture
from .errors import exit_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, Optional, Tuple

HOST = socket.gethostname()
# this process's id, read once (a system call costs ~1 us per job in a VM) and again in
# the child of a fork
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))

# a real Ctrl-C (SIGINT) while a job runs in the main thread, told apart from a job raising
# KeyboardInterrupt itself: only the former ends the calling program
_sigint = {"real": False}


def _on_sigint(signum: int, frame: Any) -> None:
    _sigint["real"] = True
    raise KeyboardInterrupt


try:  # the C module: signal's wrappers convert to enums, ~20 us per job
    import _signal as _sig
except ImportError:  # pragma: no cover - not CPython
    _sig = signal


def _watch_sigint() -> bool:
    """Install the SIGINT recorder for a job in the main thread; True if installed (then
    ``_unwatch_sigint`` must follow). A plain function pair: a context manager per job
    costs more than the job itself when jobs are tiny."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if _sig.getsignal(_sig.SIGINT) is not _sig.default_int_handler:
            return False  # the program's own handler, or an outer job's recorder
        _sigint["real"] = False
        _sig.signal(_sig.SIGINT, _on_sigint)
    except (ValueError, AttributeError):
        return False
    return True


def _unwatch_sigint() -> None:
    _sig.signal(_sig.SIGINT, _sig.default_int_handler)
    _sigint["real"] = False


def call_function(fn: Callable[..., Any], kwargs: Dict[str, Any], handler: str = "",
                  echo: bool = True) -> Tuple[Any, Optional[BaseException], str, Dict[str, Any]]:
    """Call ``fn(**kwargs)`` capturing console output.

    Returns (result, exception or None, traceback text, runtime info dict); never raises
    for an error of the function: a SystemExit, KeyboardInterrupt or other non-``Exception``
    the function raises becomes a ``JobExitError``. Only a real Ctrl-C (SIGINT) that arrives
    while the job runs in the main thread propagates, as KeyboardInterrupt.
    """
    ri = {"host": HOST, "pid": _PID[0], "handler": handler, "start_time": time.time()}
    result, error, tb_text = None, None, ""
    out, err = start_capture(echo)  # not a context manager: tiny jobs pay per call
    watching = _watch_sigint()
    try:
        result = fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - the job's error is data here
        if isinstance(exc, KeyboardInterrupt) and _sigint["real"] \
                and threading.current_thread() is threading.main_thread():
            raise
        tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = exc if isinstance(exc, Exception) else exit_error(exc)
    finally:
        if watching:
            _unwatch_sigint()
        end_capture()
    ri["end_time"] = time.time()
    ri["stdout"], ri["stderr"] = "".join(out), "".join(err)
    if out or err:  # show it now, even where the stream is block-buffered (a pipe)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    ri["status"] = "error" if error is not None else "finished"
    return result, error, tb_text, ri


