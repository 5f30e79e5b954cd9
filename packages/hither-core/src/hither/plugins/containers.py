"""Choosing and making the container runner for an image (``hither.plugins.containers``).

An image URL's scheme says what the image is (``docker://``, ``library://``, ``oras://``,
``shub://``, or a ``.sif`` file), not which engine runs it: a Docker image runs on docker
or on apptainer/singularity. Each installed runner declares the schemes it can run; the
engine is ``hi.Config(container_engine=...)`` when given, else the first installed and
available runner in ``ENGINE_PREFERENCE`` order (then any other) that runs the scheme.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Tuple, Type

from hither.plugins import registry
from hither.errors import ConfigError, PluginNotInstalledError
from hither.plugins.interfaces import ContainerRunner
from hither.plugins.lifetime import close_at_exit

if TYPE_CHECKING:  # pragma: no cover
    from hither.models import ContainerOptions

logger = logging.getLogger("hither.plugins.containers")

#: the engine chosen for an image when several installed runners can run it
ENGINE_PREFERENCE = ("docker", "apptainer", "singularity")
_AVAILABLE_TTL = 30.0  # seconds an engine's "available" answer is trusted

_lock = threading.Lock()
_available: Dict[Type[ContainerRunner], float] = {}  # runner class -> when it last answered
_instances: Dict[Tuple[Type[ContainerRunner], str], ContainerRunner] = {}


def image_scheme(image: str) -> str:
    """The kind of image: the URL scheme, or ``"sif"`` for a ``.sif`` file path."""
    if "://" in image:
        return image.split("://", 1)[0]
    if image.endswith(".sif"):
        return "sif"
    raise ConfigError(f"container image {image!r} is not an image URL: write it as "
                      "'docker://name:tag' (or library://, oras://, shub://, or a .sif file)")


def _is_available(cls: Type[ContainerRunner]) -> bool:
    now = time.monotonic()
    with _lock:
        seen = _available.get(cls)
    if seen is not None and now - seen < _AVAILABLE_TTL:
        return True
    try:
        ok = bool(cls.is_available())
    except Exception as exc:  # an engine that cannot even be asked is not available
        logger.debug("container runner %s: is_available() failed: %s", cls.name, exc)
        ok = False
    if ok:
        with _lock:
            _available[cls] = now
    return ok


def _installed_runners() -> List[Type[ContainerRunner]]:
    found = []
    for name in registry.names("container_runners"):
        try:
            found.append(registry.load("container_runners", name))
        except PluginNotInstalledError:
            continue  # a broken plugin already warned
    order = {n: i for i, n in enumerate(ENGINE_PREFERENCE)}
    return sorted(found, key=lambda c: (order.get(c.name, len(order)), c.name))


def runner_class_for(image: str, cfg: Any, function_name: str = "the job") -> Type[ContainerRunner]:
    """The runner class that will run ``image`` under configuration ``cfg``; a
    ``ConfigError`` that says what to install or configure when there is none."""
    scheme = image_scheme(image)
    engine = getattr(cfg, "container_engine", None)
    if engine is not None:
        try:
            cls = registry.load("container_runners", engine)
        except PluginNotInstalledError as exc:
            raise ConfigError(f"hi.Config(container_engine={engine!r}) for {function_name}: {exc}") from None
        if scheme not in cls.schemes:
            raise ConfigError(f"the {engine} container runner cannot run {image!r} ({scheme}:// images); "
                              f"it runs {', '.join(s + '://' for s in cls.schemes) or 'nothing'}. "
                              "Choose another hi.Config(container_engine=...)")
        return cls
    capable = [c for c in _installed_runners() if scheme in c.schemes]
    if not capable:
        raise ConfigError(
            f"{function_name} is configured to run in the container {image!r}, but no installed "
            f"container runner runs {scheme}:// images. Install one (pip install hither-container), "
            "or set hi.Config(container=False) to run on the host.")
    for cls in capable:
        if _is_available(cls):
            return cls
    names = ", ".join(c.name for c in capable)
    raise ConfigError(f"{function_name} is configured to run in the container {image!r}, but no "
                      f"container engine that runs it is available here (installed runners: {names}; "
                      "is the engine installed and its daemon running?). Or set "
                      "hi.Config(container=False) to run on the host.")


def runner_for(image: str, cfg: Any, function_name: str = "the job") -> ContainerRunner:
    """A runner instance for ``image`` with ``cfg``'s container options, shared by jobs of
    the same runner and options (so warm containers can be reused)."""
    from hither.models import ContainerOptions

    cls = runner_class_for(image, cfg, function_name)
    options: "ContainerOptions" = getattr(cfg, "container_options", None) or ContainerOptions()
    key = (cls, options.model_dump_json())
    with _lock:
        inst = _instances.get(key)
        if inst is None:
            inst = _instances[key] = cls(options)
        return inst


def close_runners() -> None:
    """Close every runner made here (stops warm containers); also at interpreter exit."""
    with _lock:
        insts = list(_instances.values())
        _instances.clear()
    for inst in insts:
        try:
            inst.close()
        except Exception:  # pragma: no cover - exiting anyway
            logger.exception("could not close container runner %s", inst.name)


close_at_exit(close_runners)  # after the handlers have stopped their jobs
