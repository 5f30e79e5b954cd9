"""Lazy plugin registry over entry points, with "pip install ..." hints.

Groups (entry-point group = ``hither.<group>``): ``job_handlers``, ``caches``, ``stores``,
``container_runners`` and ``exports`` (extra top-level names such as ``ComputeResource``).
Nothing is imported until asked for; a plugin that fails to import gives a warning naming
it; two different plugins under one name are an error.
"""
from __future__ import annotations

import importlib
import logging
import threading
import warnings
from importlib import metadata
from typing import Any, Dict, Optional, Tuple

from hither.errors import PluginError, PluginNotInstalledError
from hither.plugins.cli import pip_install
from hither.plugins.interfaces import CacheBackend, ContainerRunner, JobHandler, Store

logger = logging.getLogger("hither.plugins.registry")

GROUPS = ("job_handlers", "caches", "stores", "container_runners", "exports")

#: (group, name) -> the distribution that provides it, for install hints
KNOWN_PROVIDERS: Dict[Tuple[str, str], str] = {
    ("job_handlers", "slurm"): "hither-slurm",
    ("job_handlers", "remote"): "hither-remote",
    ("caches", "file"): "hither-cache",
    ("caches", "mongo"): "hither-cache[mongo]",
    ("stores", "fsspec"): "hither-store",
    ("container_runners", "docker"): "hither-container",
    ("container_runners", "singularity"): "hither-container",
    ("container_runners", "apptainer"): "hither-container",
    ("exports", "SlurmJobHandler"): "hither-slurm",
    ("exports", "RemoteJobHandler"): "hither-remote",
    ("exports", "ComputeResource"): "hither-remote",
}

#: the interface a plugin of each group implements (``exports`` are any object)
GROUP_INTERFACES: Dict[str, type] = {"job_handlers": JobHandler, "caches": CacheBackend,
                                     "stores": Store, "container_runners": ContainerRunner}

_lock = threading.RLock()
_specs: Dict[str, Dict[str, str]] = {}  # group -> name -> "module:attr" (discovered lazily)
_loaded: Dict[Tuple[str, str], Any] = {}
_manual: Dict[str, Dict[str, Any]] = {g: {} for g in GROUPS}


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r}; the groups are {', '.join(GROUPS)}")


def _discover(group: str) -> Dict[str, str]:
    with _lock:
        if group in _specs:
            return _specs[group]
        found: Dict[str, str] = {}
        origin: Dict[str, str] = {}
        for ep in metadata.entry_points(group=f"hither.{group}"):
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            if ep.name in found and found[ep.name] != ep.value:
                raise PluginError(
                    f"two plugins are registered as {ep.name!r} in hither.{group}: "
                    f"{found[ep.name]} (from {origin[ep.name]}) and {ep.value} (from {dist}); "
                    "uninstall one of them")
            found[ep.name] = ep.value
            origin[ep.name] = dist
        _specs[group] = found
        return found


def names(group: str) -> list:
    """Names available in ``group`` (installed entry points plus manual registrations)."""
    _check_group(group)
    return sorted(set(_discover(group)) | set(_manual[group]))


def register(group: str, name: str, obj: Any) -> None:
    """Register a plugin object (or "module:attr" string) by hand, e.g. in tests or notebooks."""
    _check_group(group)
    with _lock:
        existing = _manual[group].get(name)
        if existing is not None and existing is not obj:
            raise PluginError(f"a plugin named {name!r} is already registered in hither.{group}")
        _manual[group][name] = obj
        _loaded.pop((group, name), None)


def unregister(group: str, name: str) -> None:
    with _lock:
        _manual[group].pop(name, None)
        _loaded.pop((group, name), None)


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def install_hint(group: str, name: str) -> str:
    """How to get the plugin ``name`` of ``group``: a ``pip install`` command quoted for any
    shell, or the names that are installed."""
    dist = KNOWN_PROVIDERS.get((group, name))
    if dist:
        return f"install it with: {pip_install(dist)}"
    return f"no installed package provides it (installed: {', '.join(names(group)) or 'none'})"


def load(group: str, name: str) -> Any:
    """The plugin ``name`` of ``group``; ``PluginNotInstalledError`` with an install hint if
    no installed package provides it. A plugin whose import fails warns and counts as absent."""
    _check_group(group)
    key = (group, name)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        target: Optional[Any] = _manual[group].get(name)
        if target is None:
            target = _discover(group).get(name)
        if target is None:
            what = (f"hi.{name}" if group == "exports"
                    else f"the {group.rstrip('s').replace('_', ' ')} plugin {name!r}")
            raise PluginNotInstalledError(f"{what} is not available: " + install_hint(group, name))
        if isinstance(target, str):
            try:
                obj = _import_target(target)
            except Exception as exc:  # a broken plugin must not crash hither itself
                warnings.warn(f"hither plugin {name!r} ({target}) in hither.{group} failed to "
                              f"load and is ignored: {type(exc).__name__}: {exc}", stacklevel=2)
                raise PluginNotInstalledError(
                    f"the hither plugin {name!r} in hither.{group} is installed but broken "
                    f"({type(exc).__name__}: {exc}); reinstall it ({install_hint(group, name)})"
                ) from exc
        else:
            obj = target
        _check_plugin(group, name, obj, target)
        _loaded[key] = obj
        return obj


def _check_plugin(group: str, name: str, obj: Any, target: Any) -> None:
    """A plugin must implement its group's interface and carry the name it is registered
    under, so that what ``hi.Config`` and error messages say matches what runs."""
    iface = GROUP_INTERFACES.get(group)
    if iface is None:
        return
    where = target if isinstance(target, str) else repr(obj)
    if not (isinstance(obj, type) and issubclass(obj, iface)):
        raise PluginError(f"the hither plugin {name!r} in hither.{group} ({where}) is not a subclass "
                          f"of hither.plugins.interfaces.{iface.__name__}; fix or uninstall the package that "
                          "provides it")
    declared = getattr(obj, "name", None)
    if declared != name:
        raise PluginError(f"the hither plugin {where} is registered as {name!r} in hither.{group} but "
                          f"its class says name = {declared!r}; the two must match")


def refresh() -> None:
    """Forget discovered entry points (after installing a package into a running process)."""
    with _lock:
        _specs.clear()
        _loaded.clear()
