"""Container jobs on a compute resource: ``ResourceLauncher`` runs a job directory on the
resource's host launcher, or, when its spec names an image and containers are on, in that
image through the container runner (itself a ``Launcher``) chosen by
``hither.plugins.containers`` (engine preference, network ``none`` unless the resource's
``container_options`` say otherwise; a client cannot ask for more)::

    launcher = ResourceLauncher(SubprocessLauncher(), containers=None)   # auto
    why = launcher.refusal("docker://python:3.11", "add")   # None: it can run here
    code = launcher.launch(job_dir, timeout=60)             # host or container, by spec.json

``containers``: ``True`` (a container runner must be installed and its engine answering
when the resource starts), ``False`` (every container job is refused with a message the
client sees), ``None`` (auto, the default: a container job runs when a runner for its
image is installed and available here, else it is refused saying why).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from types import SimpleNamespace
from typing import Any, Dict, Optional

from hither.errors import ConfigError
from hither.plugins.interfaces import Launcher

logger = logging.getLogger("hither_remote.resource_containers")


class ResourceLauncher(Launcher):
    """Runs job directories on ``host``, or in their container (see the module docstring)."""

    name = "compute resource"

    def __init__(self, host: Launcher, containers: Optional[bool] = None, *,
                 container_engine: Optional[str] = None, container_options: Any = None) -> None:
        from hither.models import ContainerOptions

        if containers not in (None, True, False):
            raise ConfigError(f"ComputeResource(containers=...) takes True, False or None (auto), "
                              f"not {containers!r}")
        if isinstance(container_options, dict):
            container_options = ContainerOptions(**container_options)
        self.host = host
        self.capacity = host.capacity
        self.containers = containers
        # what hither.plugins.containers reads from a hi.Config: the resource's own settings
        self._cfg = SimpleNamespace(container_engine=container_engine,
                                    container_options=container_options or ContainerOptions())
        self._lock = threading.Lock()
        self._active: Dict[str, Launcher] = {}   # job dir -> its container launcher
        if containers and not self._host_runs_containers():
            self._check_available()

    def _check_available(self) -> None:
        from hither.plugins import registry
        from hither.errors import PluginNotInstalledError

        engine = self._cfg.container_engine
        names = [engine] if engine is not None else registry.names("container_runners")
        for name in names:
            try:
                if registry.load("container_runners", name).is_available():
                    return
            except PluginNotInstalledError:
                continue
            except Exception as exc:  # noqa: BLE001 - an engine that cannot be asked is not available
                logger.debug("container runner %s: %s", name, exc)
        raise ConfigError(f"containers are on (--containers) but no container engine answers on this "
                          f"resource (runners: {', '.join(names) or 'none installed'}). Install "
                          "hither-container and start the engine (e.g. the Docker daemon), or serve "
                          "with --no-containers")

    def _host_runs_containers(self) -> bool:
        """Whether the host launcher runs container jobs itself (``Launcher.runs_containers``:
        Slurm pilots start the container on their node), so that no engine is needed here."""
        return self.host.runs_containers

    def runner_file_needed(self, spec: Dict[str, Any]) -> bool:
        """Whether the job directory of ``spec`` needs its ``runner.py``: a container job
        does, a host job only if the host launcher reads it (``Launcher.needs_runner_file``)."""
        return bool(spec.get("container")) or self.host.needs_runner_file

    def refusal(self, image: str, function_name: str) -> Optional[str]:
        """Why this resource will not run ``function_name`` in ``image`` (None: it will)."""
        if self.containers is not False and self._host_runs_containers():
            return None
        if self.containers is False:
            return (f"{function_name} asks for container {image!r}, and this compute resource does not run "
                    "containers (it serves with --no-containers); run it without container=True, or send "
                    "it to a resource that runs containers")
        from hither.plugins.containers import runner_class_for

        try:
            runner_class_for(image, self._cfg, function_name)
        except ConfigError as exc:
            return f"this compute resource cannot run {function_name} in a container: {exc}"
        return None

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        with open(os.path.join(job_dir, "spec.json")) as f:
            spec = json.load(f)
        image = spec.get("container")
        if not image or self._host_runs_containers():
            return self.host.launch(job_dir, timeout)
        from hither.plugins.containers import runner_for

        launcher = runner_for(image, self._cfg, spec.get("function_name", "the job"))
        with self._lock:
            self._active[job_dir] = launcher
        try:
            logger.debug("%s runs in %s (%s)", spec.get("function_name"), image, launcher.name)
            return launcher.launch(job_dir, timeout)
        finally:
            with self._lock:
                self._active.pop(job_dir, None)

    def kill(self, job_dir: str) -> None:
        with self._lock:
            launcher = self._active.get(job_dir)
        (launcher or self.host).kill(job_dir)

    def close(self) -> None:
        self.host.close()
