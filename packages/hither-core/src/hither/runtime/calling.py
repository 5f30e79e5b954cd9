"""Calling a job's function: ``call_function`` runs it with its console captured and its
runtime info recorded, turning anything it raises into data; a real Ctrl-C still ends the
program. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

from .console import end_capture, start_capture
from .errors import exit_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, Optional, Tuple

def _hostname() -> str:
    """This machine's name as ``socket.gethostname()`` gives it: uname's node name where
    there is one (importing socket costs a fresh interpreter ~2 ms, and every job pays it)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


HOST = _hostname()
# this process's id, read once (a system call costs ~1 us per job in a VM) and again in
# the child of a fork
_PID = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _from_signal(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt that ended a job is a real Ctrl-C (SIGINT) rather than
    the job raising it: a signal's KeyboardInterrupt surfaces wherever the interpreter was
    (any instruction, a call), or in the program's own SIGINT handler; a job's own comes
    from a ``raise`` statement. Worked out from the traceback once it happened, so a job
    pays nothing for it (swapping in a recorder costs two system calls per job). Only the
    main thread receives signals."""
    if threading.current_thread() is not threading.main_thread():
        return False
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    handler = signal.getsignal(signal.SIGINT)
    if getattr(handler, "__code__", None) is code:  # raised by the program's SIGINT handler
        return True
    import opcode

    ops = code.co_code
    at = tb.tb_lasti
    return not (0 <= at < len(ops) and ops[at] == opcode.opmap["RAISE_VARARGS"])


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
    try:
        result = fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - the job's error is data here
        if isinstance(exc, KeyboardInterrupt) and _from_signal(exc):
            raise
        tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = exc if isinstance(exc, Exception) else exit_error(exc)
    finally:
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


