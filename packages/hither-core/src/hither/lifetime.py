"""Job handlers that hold processes (pool workers, Slurm batches) shut down at interpreter
exit, whichever package made them::

    class MyHandler(JobHandler):
        def __init__(self) -> None:
            ...
            shut_down_at_exit(self)   # its shutdown(wait=False) runs at exit, if still alive

Handlers are held weakly (a handler that was dropped is not kept alive for this). The one
exit hook is registered at the first handler, so it runs before hooks registered at
import, such as the closing of container runners (``hither.containers.close_runners``):
handlers stop their jobs first, then the containers left are closed.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any

logger = logging.getLogger("hither.lifetime")

_handlers: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()
_registered = [False]


def shut_down_at_exit(handler: Any) -> None:
    """Call ``handler.shutdown(wait=False)`` at interpreter exit if it is still alive then."""
    with _lock:
        _handlers.add(handler)
        if not _registered[0]:
            _registered[0] = True
            atexit.register(shut_down_all)


def live_handlers() -> "list[Any]":
    """The handlers given to ``shut_down_at_exit`` that are still alive."""
    with _lock:
        return list(_handlers)


def shut_down_all() -> None:
    """Shut down (``wait=False``) every handler given to ``shut_down_at_exit`` still alive."""
    for h in live_handlers():
        try:
            h.shutdown(wait=False)
        except Exception:  # exiting anyway: one handler must not keep the others running
            logger.exception("could not shut down %r at exit", h)
