"""``@hi.function`` and its companion decorators, and the registry of functions by name."""
from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from hither.errors import FunctionDefinitionError, UnknownFunctionError

logger = logging.getLogger("hither.function")

_registry: Dict[str, "HitherFunction"] = {}
_registry_lock = threading.Lock()
_create_job: List[Any] = [None]  # the job manager's create_job, once imported (HitherFunction.run)

# attributes that @hi.container etc. leave on a raw function decorated before @hi.function
_ATTRS = ("_hither_container", "_hither_additional_files", "_hither_local_modules", "_hither_opts")


class HitherFunction:
    """A function decorated with ``@hi.function(name, version)``.

    Calling it runs the function directly (no cache, no handler); ``.run(**kwargs)``
    returns a ``Job``.
    """

    def __init__(self, fn: Callable[..., Any], name: str, version: str, retry: Any = None) -> None:
        self.raw = fn
        self.name = name
        self.version = version
        #: its jobs' hi.Retry policy (None: hi.Config's, else the default)
        self.retry = retry
        self.container: Optional[str] = getattr(fn, "_hither_container", None)
        self.additional_files: List[str] = list(getattr(fn, "_hither_additional_files", []))
        self.local_modules: List[str] = list(getattr(fn, "_hither_local_modules", []))
        self.opts: Dict[str, Any] = dict(getattr(fn, "_hither_opts", {}))
        self.signature = inspect.signature(fn)
        self.module = fn.__module__
        self.qualname = fn.__qualname__
        try:
            self.source_file: Optional[str] = os.path.abspath(inspect.getsourcefile(fn) or "")
        except TypeError:
            self.source_file = None
        self._bundle: Any = None
        self._worker_ref: Any = None
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def __getstate__(self) -> Dict[str, Any]:  # picklable by value (cloudpickle, __main__)
        state = dict(self.__dict__)
        for k in ("_lock", "_bundle", "_worker_ref", "_hither_binding", "_code_identity",
                  "_identity_by_value", "_identity_reads"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bundle = None
        self._worker_ref = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> "Any":
        """Start a job (see ``hi.Config`` for where it runs); returns a ``hi.Job``."""
        create = _create_job[0]
        if create is None:  # the first job: the job manager is not imported before
            from hither.jobs.manager import manager

            create = _create_job[0] = manager.create_job
        return create(self, args, kwargs)

    @property
    def no_resolve_input_files(self) -> bool:
        return bool(self.opts.get("no_resolve_input_files", False))

    def code_bundle(self) -> Any:
        """This function's packaged code (``hither.outside.bundle.CodeBundle``), built once."""
        with self._lock:
            if self._bundle is None:
                from hither.errors import HitherError
                from hither.outside.bundle import build_bundle

                try:
                    self._bundle = build_bundle(self)
                except HitherError as exc:  # remembered: every cache lookup asks again
                    self._bundle = exc
            if isinstance(self._bundle, BaseException):
                raise self._bundle
            return self._bundle

    def __repr__(self) -> str:
        return f"<hither function {self.name} {self.version}>"


def function(name: str, version: str, retry: Any = None) -> Callable[[Callable[..., Any]], HitherFunction]:
    """Decorate a pure function as a hither function: ``@hi.function('add', '0.1.0')``.

    ``name`` must be the function's own name; bump ``version`` whenever its results may
    change, so cached results of the old version are not reused. ``retry``: the
    ``hi.Retry`` of its jobs (or a number of attempts, or False for none), before
    ``hi.Config(retry=...)``'s.
    """
    if not isinstance(name, str) or not name:
        raise FunctionDefinitionError(f"@hi.function needs a name string, got {name!r}")
    if not isinstance(version, str) or not version:
        raise FunctionDefinitionError(f"@hi.function({name!r}, ...) needs a version string such as "
                                      f"'0.1.0', got {version!r}")
    if retry is not None:
        from hither.retry import as_policy

        retry = as_policy(retry, f"@hi.function({name!r}, {version!r}, ...)")

    def deco(fn: Callable[..., Any]) -> HitherFunction:
        if isinstance(fn, HitherFunction):
            raise FunctionDefinitionError(f"@hi.function is applied twice to {fn.name}")
        if not callable(fn) or not hasattr(fn, "__name__"):
            raise FunctionDefinitionError(f"@hi.function({name!r}) must decorate a function")
        if fn.__name__ != name:
            raise FunctionDefinitionError(
                f"@hi.function({name!r}, {version!r}) decorates a function named "
                f"{fn.__name__!r}: the name must match the function's name; write "
                f"@hi.function({fn.__name__!r}, {version!r}) or rename the function")
        hf = HitherFunction(fn, name, version, retry)
        _register(hf)
        return hf

    return deco


def _register(hf: HitherFunction) -> None:
    """Register ``hf`` by name. The same module defining the name again (a notebook cell or
    a script run again, ``importlib.reload``) replaces it: that is editing, not a clash."""
    with _registry_lock:
        old = _registry.get(hf.name)
        if old is not None and _same_home(old, hf):
            logger.debug("hither function %r redefined in %s: the new definition replaces the old",
                         hf.name, hf.module)
        elif old is not None:
            where_old = old.source_file or old.module
            where_new = hf.source_file or hf.module
            warnings.warn(f"hither function name {hf.name!r} is registered twice: in {where_old} "
                          f"and in {where_new}; hi.run({hf.name!r}) now uses the second. Rename "
                          "one of them.", stacklevel=3)
        _registry[hf.name] = hf


def _same_home(old: HitherFunction, new: HitherFunction) -> bool:
    """Whether two definitions of one name come from the same module: ``__main__`` (a script,
    a notebook's cells) whatever its cell files, else the same module and file."""
    if old.module != new.module:
        return False
    return old.module == "__main__" or not (old.source_file and new.source_file) \
        or old.source_file == new.source_file


def get_function(name: str) -> HitherFunction:
    with _registry_lock:
        hf = _registry.get(name)
    if hf is None:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownFunctionError(f"no hither function named {name!r} is registered (import the "
                                   f"module that defines it first); registered: {known}")
    return hf


def run(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run a registered hither function by name: ``hi.run('add', x=1, y=2).wait()``."""
    return get_function(name).run(*args, **kwargs)


def _set_attr(name: str, value: Any) -> Callable[[Any], Any]:
    def deco(fn: Any) -> Any:
        if isinstance(fn, HitherFunction):
            if name == "_hither_container":
                fn.container = value
            elif name == "_hither_additional_files":
                fn.additional_files = list(value)
            elif name == "_hither_local_modules":
                fn.local_modules = list(value)
            else:
                fn.opts.update(value)
            fn._bundle = None
        else:
            setattr(fn, name, {**getattr(fn, name, {}), **value} if name == "_hither_opts" else value)
        return fn

    return deco


def container(url: Optional[str]) -> Callable[[Any], Any]:
    """Declare the container image a function runs in when ``hi.Config(container=True)``:
    ``@hi.container('docker://python:3.11')``."""
    if url is not None and (not isinstance(url, str) or "://" not in url):
        raise FunctionDefinitionError(f"@hi.container needs an image URL such as "
                                      f"'docker://python:3.11', got {url!r}")
    return _set_attr("_hither_container", url)


def additional_files(patterns: Sequence[str]) -> Callable[[Any], Any]:
    """Ship non-.py files of the function's directory tree whose *names* match these fnmatch
    patterns: ``@hi.additional_files(['*.json'])``."""
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise FunctionDefinitionError("@hi.additional_files takes a list of file-name patterns, "
                                      f"e.g. ['*.json'], got {patterns!r}")
    for p in patterns:
        if "/" in p or os.sep in p:
            raise FunctionDefinitionError(f"@hi.additional_files pattern {p!r} contains a path: "
                                          "patterns match file names only")
    return _set_attr("_hither_additional_files", list(patterns))


def local_modules(paths: Sequence[str]) -> Callable[[Any], Any]:
    """Ship these directories (relative to the function's file, or absolute) with the code:
    ``@hi.local_modules(['../mylib'])``."""
    if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
        raise FunctionDefinitionError(f"@hi.local_modules takes a list of directory paths, got {paths!r}")
    return _set_attr("_hither_local_modules", list(paths))


def opts(no_resolve_input_files: Optional[bool] = None) -> Callable[[Any], Any]:
    """Per-function options: ``@hi.opts(no_resolve_input_files=True)`` hands ``hi.File``
    arguments to the function as File objects instead of local paths."""
    o: Dict[str, Any] = {}
    if no_resolve_input_files is not None:
        o["no_resolve_input_files"] = bool(no_resolve_input_files)
    return _set_attr("_hither_opts", o)
