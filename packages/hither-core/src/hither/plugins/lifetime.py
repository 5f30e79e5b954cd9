"""Job handlers that hold processes (pool workers, Slurm batches) shut down at interpreter
exit, whichever package made them::

    class MyHandler(JobHandler):
        def __init__(self) -> None:
            ...
            shut_down_at_exit(self)   # its shutdown(wait=False) runs at exit, if still alive

Handlers are held weakly (a handler that was dropped is not kept alive for this). What
must close after the handlers have stopped their jobs registers with ``close_at_exit``
(``hither.plugins.containers.close_runners``: the warm containers left); the one exit hook runs
the handlers' shutdowns first, then those, whichever was registered first.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any, Callable, List

logger = logging.getLogger("hither.plugins.lifetime")

_handlers: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()
_closers: "List[Callable[[], None]]" = []
_registered = [False]


def _hook() -> None:
    """Register the one exit hook (under ``_lock``)."""
    if not _registered[0]:
        _registered[0] = True
        atexit.register(shut_down_all)


def shut_down_at_exit(handler: Any) -> None:
    """Call ``handler.shutdown(wait=False)`` at interpreter exit if it is still alive then."""
    with _lock:
        _handlers.add(handler)
        _hook()


def close_at_exit(closer: "Callable[[], None]") -> None:
    """Call ``closer()`` at interpreter exit, after the handlers were shut down."""
    with _lock:
        _closers.append(closer)
        _hook()


def live_handlers() -> "list[Any]":
    """The handlers given to ``shut_down_at_exit`` that are still alive."""
    with _lock:
        return list(_handlers)


def shut_down_all() -> None:
    """Shut down (``wait=False``) every handler given to ``shut_down_at_exit`` still alive,
    then call the closers given to ``close_at_exit``."""
    for h in live_handlers():
        try:
            h.shutdown(wait=False)
        except Exception:  # exiting anyway: one handler must not keep the others running
            logger.exception("could not shut down %r at exit", h)
    with _lock:
        closers = list(_closers)
    for closer in closers:
        try:
            closer()
        except Exception:  # exiting anyway
            logger.exception("could not run %r at exit", closer)
