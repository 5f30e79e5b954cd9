"""How a ``ComputeResource`` runs its jobs and stops: the launcher with its capacity
(``launcher_for``), and SIGINT/SIGTERM turned into a stop (``install_stop_signals``)::

    launcher, workers = launcher_for(hi.ParallelJobHandler(4), None)   # (JobServerLauncher, 4)
    restore = install_stop_signals(stop_event, wake_event)              # main thread only
    ...
    restore()
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable, Optional, Tuple

from hither.plugins.interfaces import Launcher

logger = logging.getLogger("hither_remote.resource")


def launcher_for(job_handler: Any, workers: Optional[int]) -> Tuple[Launcher, int]:
    """The launcher that runs a resource's job directories and how many run at once: the
    handler's ``job_dir_launcher()`` when it gives one, else a ``JobServerLauncher`` that
    reuses job processes per code bundle as a ``ParallelJobHandler``'s would (what
    ``hither-remote serve --handler parallel`` runs); capacity ``workers`` if given, else
    the launcher's, else the handler's ``num_workers``, else 1."""
    get = getattr(job_handler, "job_dir_launcher", None)
    launcher: Optional[Launcher] = get() if get is not None else None
    if workers is None:
        workers = (launcher.capacity if launcher is not None else None) \
            or getattr(job_handler, "num_workers", None) or 1
    if launcher is None:
        from hither.outside.jobserver import JobServerLauncher

        launcher = JobServerLauncher(capacity=workers, reuse=True)
    elif launcher.capacity is not None and launcher.capacity < workers:
        logger.warning("workers=%d, but %r runs %d job(s) at once: claimed jobs wait for it",
                       workers, job_handler, launcher.capacity)
    return launcher, workers


def install_stop_signals(stop: threading.Event, wake: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set ``stop`` and ``wake`` (in the main thread only; elsewhere
    nothing changes); returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, frame: Any) -> None:
        if not stop.is_set():  # one line, however many signals come
            logger.info("signal %d: stopping, handing unfinished jobs back", signum)
        stop.set()
        wake.set()

    for s in old:
        signal.signal(s, on_signal)

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)
    return restore
