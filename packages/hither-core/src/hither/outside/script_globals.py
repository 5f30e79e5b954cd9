"""The globals a script's (``__main__``) function reads, as the job directory carries them
(``JobSpec.script_globals``), so that on the outside path it runs with their values in the
caller, not as its file assigns them.

The runner loads a script's *definitions only* (``hither.runtime`` ``load_script_definitions``):
``SCALE = 3`` in the script's main block never runs there. So when a job directory is made,
``collect`` takes the globals the function reads, and those its ``__main__`` helper functions
read (transitively, as ``hither.code_identity`` does for the identity), whose values are plain
data of the one value grammar: None, bool, int, float, str, numpy arrays and scalars, values of
an int/float/str subclass (Enums), and lists, tuples and dicts with str keys of those. They are
encoded with the wire encoder (arrays as ``.npy`` files of the job directory) and the runner
sets them in the loaded script before the call. Modules, functions, classes and hither
functions are left to the definitions loader; a global holding anything else (an object of
the script's own class, a ``hi.File``, bytes) is not shipped: the function sees it as the
file defines it, as before (docs/caching.md).

A global larger than ``max_bytes()`` (``$HITHER_SCRIPT_GLOBAL_MAX_BYTES``, 16 MiB by default)
is not copied into every job directory: the job sees it as the file defines it, as before
(a script whose big module-level array never changes keeps working), with one warning
naming it per function.
"""
from __future__ import annotations

import logging
import os
import types
from typing import Any, Callable, Dict, List, Set

from hither.code_identity import code_names
from hither.errors import HitherError
from hither.runtime import Visitor, encode_value, format_path

logger = logging.getLogger("hither.outside.script_globals")

ENV_MAX_BYTES = "HITHER_SCRIPT_GLOBAL_MAX_BYTES"
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
_warned: Set[Any] = set()  # (function name, global name) warned about being too big


def max_bytes() -> int:
    """The largest script global shipped to a job (``$HITHER_SCRIPT_GLOBAL_MAX_BYTES``)."""
    text = os.environ.get(ENV_MAX_BYTES, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        raise HitherError(f"${ENV_MAX_BYTES} must be a whole number of bytes, got {text!r}") from None
    if value < 0:
        raise HitherError(f"${ENV_MAX_BYTES} must be >= 0, got {value}")
    return value


class _NotPlain(Exception):
    """A value (or a part of it) that is not plain data: the global is not shipped."""


class _Size(Visitor):
    """The rough size in bytes of a plain value (its arrays' bytes, its strings' lengths),
    raising ``_NotPlain`` for anything else."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def leaf(self, v: Any, path: Any) -> Any:  # file, ref, job, other
        raise _NotPlain(format_path(path))

    def _scalar(self, v: Any, path: Any) -> Any:
        self.total += 8
        return v

    visit_none = visit_bool = visit_int = visit_float = _scalar

    def visit_str(self, v: str, path: Any) -> Any:
        self.total += len(v) + 2
        return v

    def visit_typed(self, v: Any, path: Any) -> Any:
        self.total += len(str(v)) + 8
        return v

    def visit_npscalar(self, v: Any, path: Any) -> Any:
        if v.dtype.hasobject:
            raise _NotPlain(format_path(path))
        self.total += int(v.nbytes) + 16
        return v

    def visit_ndarray(self, v: Any, path: Any) -> Any:
        if v.dtype.hasobject:  # saved without pickle: object arrays cannot travel
            raise _NotPlain(format_path(path))
        self.total += int(v.nbytes)
        return v

    def visit_dict(self, v: Any, path: Any) -> Any:
        if any(type(k) is not str for k in v):  # JSON would turn 1 into "1"
            raise _NotPlain(format_path(path))
        self.total += sum(len(k) for k in v)
        return super().visit_dict(v, path)


def _unwrap(func: Any) -> Any:
    """The Python function of a hither function (or a decorated one); anything else as is."""
    if type(func).__name__ == "HitherFunction":
        func = func.raw
    if not isinstance(func, types.FunctionType):
        return func  # a user object's attributes are never read: one may fail when read
    for _ in range(100):  # a chain of decorators (never a loop)
        inner = getattr(func, "__wrapped__", None)
        if not isinstance(inner, types.FunctionType):
            break
        func = inner
    return func


def _read_names(fn: Any) -> Dict[str, Any]:
    """The globals ``fn`` and its ``__main__`` helper functions read, transitively: name ->
    value, for the names its module's namespace holds."""
    func = _unwrap(fn)
    g = getattr(func, "__globals__", None)
    if not isinstance(func, types.FunctionType) or g is None:
        return {}
    found: Dict[str, Any] = {}
    todo: List[Any] = [func]
    seen: Set[int] = set()
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        for name in code_names(f.__code__):
            if name not in g or name in found:
                continue
            v = g[name]
            found[name] = v
            inner = _unwrap(v)
            if isinstance(inner, types.FunctionType) and inner.__globals__ is g:
                todo.append(inner)
    return found


def collect(fn: Any, array_sink: Callable[[Any], str]) -> Dict[str, Any]:
    """The plain-data globals ``fn`` (a ``__main__`` hither function) reads, encoded for the
    job directory (modules, functions, classes and hither functions are of no kind of
    value: the definitions loader provides them) (``array_sink`` saves each array); one larger
    than ``max_bytes()`` is left out, with a warning."""
    limit = max_bytes()
    out: Dict[str, Any] = {}
    for name, value in sorted(_read_names(fn).items()):
        if name == "_hither":  # the wire tag: would make the mapping look like a tagged wire node
            continue
        size = _Size()
        try:
            size.visit(value, name)
        except _NotPlain as exc:
            logger.debug("script global %s of %s not shipped (%s is not plain data): the job "
                         "sees it as its file defines it", name, getattr(fn, "name", fn), exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a value that fails when inspected
            logger.debug("script global %s not shipped: %s: %s", name, type(exc).__name__, exc)
            continue
        if size.total > limit:
            key = (getattr(fn, "name", str(fn)), name)
            if key not in _warned:
                _warned.add(key)
                logger.warning(
                    "the global %r that %r reads is about %.1f MiB, over the %.1f MiB a script's "
                    "global may have to be copied into each job directory: the job sees it as the "
                    "script's file defines it; if its value at .run() differs, pass it to the "
                    "function as an argument (or a hi.File), or raise $%s",
                    name, key[0], size.total / 2**20, limit / 2**20, ENV_MAX_BYTES)
            continue
        out[name] = encode_value(value, array_sink)
    return out
