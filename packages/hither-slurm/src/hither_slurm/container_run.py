"""Running a claimed job directory in a container from a pilot (``hither_slurm.container_run``).

A job the client sent with ``container=True`` carries its image, engine and container
options in its queue entry; the pilot runs it through the container runner installed on
the node (hither-container), as core's launch step (``hither.outside.path.launch``, the runner being the Launcher), instead
of through its job server.
The handle looks like a ``hither.outside.jobserver.JobRun`` to the pilot.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

from hither.errors import JobTimeoutError
from hither.outside.jobdir import write_json_atomic
from hither.outside.jobserver import JobEnd
from hither.outside.path import launch
from hither.runtime import ERROR, RUNTIME, error_dict

logger = logging.getLogger("hither_slurm.container_run")


def container_entry(job: Any) -> Optional[Dict[str, Any]]:
    """What a pilot needs to run ``job`` in its container (None for a host job)."""
    if job.container is None:
        return None
    options = job.config.container_options
    return {"image": job.container, "engine": job.config.container_engine,
            "options": options.model_dump() if options is not None else None}


class ContainerRun:
    """A job directory running in a container on a thread of the pilot."""

    def __init__(self, spec: Dict[str, Any], job_dir: str, timeout: Optional[float]) -> None:
        self.job_dir = job_dir
        self._spec = spec
        self._timeout = timeout  # the job's; launch adds the grace
        self._end: Optional[JobEnd] = None
        self._done = threading.Event()
        self._killed = False
        self._callbacks: List[Callable[[JobEnd], None]] = []
        self._lock = threading.Lock()
        self._runner: Any = None
        threading.Thread(target=self._run, name=f"hither-container-{os.path.basename(job_dir)}",
                         daemon=True).start()

    def _make_runner(self) -> Any:
        from hither.plugins.containers import runner_for
        from hither.models import ContainerOptions

        opts = self._spec.get("options")
        cfg = SimpleNamespace(container_engine=self._spec.get("engine"),
                              container_options=ContainerOptions(**opts) if opts else None)
        return runner_for(self._spec["image"], cfg, os.path.basename(self.job_dir))

    def _run(self) -> None:
        t0 = time.monotonic()
        code: Optional[int] = None
        reason = "exited"
        try:
            self._runner = self._make_runner()
            # core's launch step, the runner being the launcher of container jobs
            code = launch(self._runner, self.job_dir, self._timeout)
            # None: stopped at the timeout after the runner wrote its own error
            reason = "cancelled" if self._killed else ("timeout" if code is None else "exited")
        except JobTimeoutError:
            reason = "timeout"
        except BaseException as exc:  # noqa: BLE001 - e.g. no such image: the job's own error
            logger.warning("container job %s could not run: %s", self.job_dir, exc)
            try:
                if not os.path.exists(os.path.join(self.job_dir, ERROR)):
                    write_json_atomic(os.path.join(self.job_dir, ERROR), error_dict(exc))
                    write_json_atomic(os.path.join(self.job_dir, RUNTIME), {"status": "error"})
                code = 0
            except OSError:
                code = None
        finally:
            end = JobEnd(self.job_dir, code, reason, seconds=time.monotonic() - t0)
            with self._lock:
                self._end = end
                callbacks, self._callbacks = self._callbacks, []
            self._done.set()
            for cb in callbacks:
                cb(end)

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> JobEnd:
        self._done.wait(timeout)
        assert self._end is not None
        return self._end

    def kill(self) -> None:
        self._killed = True
        runner = self._runner
        if runner is not None:
            runner.kill(self.job_dir)

    def add_done_callback(self, cb: Callable[[JobEnd], None]) -> None:
        with self._lock:
            if self._end is None:
                self._callbacks.append(cb)
                return
        cb(self._end)
