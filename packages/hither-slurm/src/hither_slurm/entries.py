"""``Entry``: what a SlurmJobHandler knows of one job directory in its queue."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Protocol, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job

    from .options import SlurmOptions
    from .workdir import WorkDir


class Entry:
    """What the handler knows of one queued job directory: a submitted ``Job``'s, or a
    prepared one run for a caller through ``job_dir_launcher()`` (``job`` None; the caller
    waits on ``done`` for ``end``)."""

    __slots__ = ("job", "key", "batch", "requeued", "cancelled", "timeout", "container", "name",
                 "end", "done", "claimed", "pending")

    def __init__(self, key: str, job: "Optional[Job]", timeout: Optional[float],
                 container: Optional[Dict[str, Any]], name: str) -> None:
        self.job = job
        self.key = key
        self.batch: Optional[str] = None  # the batch whose pilot claimed it
        self.claimed: Optional[float] = None  # time.monotonic() when the claim was seen
        self.pending = ""  # why it waits (a pending batch's squeue reason), as last reported
        self.requeued = 0
        self.cancelled = False
        self.timeout = timeout
        self.container = container  # hither_slurm.container_run.container_entry
        self.name = name  # "function (job id)", for messages
        # a job directory's end: ("outcome", pilot's outcome), ("error", exception) or
        # ("cancelled", None)
        self.end: Optional[Tuple[str, Any]] = None
        self.done: Optional[threading.Event] = threading.Event() if job is None else None


class EntryQueue(Protocol):
    """What the pilot launcher (``jobdir_launcher.PilotLauncher``) uses of its
    ``SlurmJobHandler``: the queue of entries and the working folder. Example::

        entry = queue.new_entry("f (job 1)", 60.0, None)
        queue.enqueue(entry)            # a pilot runs it; entry.done is set at its end
    """

    @property
    def options(self) -> "SlurmOptions": ...

    @property
    def wd(self) -> "WorkDir": ...

    def new_entry(self, name: str, timeout: Optional[float], container: Optional[Dict[str, Any]]) -> Entry: ...

    def enqueue(self, entry: Entry) -> None: ...

    def cancel_entry(self, entry: Entry) -> bool: ...

    def forget(self, e: Entry, keep_dir: bool = False) -> None: ...
