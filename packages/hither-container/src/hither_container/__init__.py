"""hither-container: run hither jobs in containers.

    import hither as hi

    @hi.function('add', '0.1.0')
    @hi.container('docker://hither-test/python-numpy:3.11')
    def add(x, y):
        return x + y

    with hi.Config(container=True):
        assert add.run(x=1, y=2).wait() == 3

hither-core finds the runners through the ``hither.container_runners`` entry points
``docker`` (``DockerRunner``, Docker Engine API), ``apptainer`` and ``singularity``
(``ApptainerRunner``/``SingularityRunner``, through the command). Heavy imports (docker-py)
happen only when a runner is used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .__about__ import __version__

_LAZY = {
    "DockerRunner": "hither_container.docker_runner",
    "ApptainerRunner": "hither_container.apptainer_runner",
    "SingularityRunner": "hither_container.apptainer_runner",
    "ContainerCrashedError": "hither_container.jobmount",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hither_container' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
