"""A job's code identity: one hash of the code (and, for by-value functions, the values) a
hither function runs with. It decides what a ParallelJobHandler worker runs and what the job
cache's ``check_code`` and "made by different code" warning compare.

- A function of an importable module (**by reference**): the source of its module file, plus
  the files of the local modules it uses (found from the names its code reads: a module, or
  a function or class of a module whose file is in the function's project folder, and,
  transitively, what those modules import from that folder). Computed once per function.
- A ``__main__``, notebook, nested or source-less function (**by value**): its own code (the
  source text where there is one, else its bytecode, constants and names, recursively), its
  defaults and closure cells, and the values of the globals its code reads, recursing into
  the global helper functions it calls. The static parts are cached per code object; the
  globals are read again at every ``.run()``.

Identities start with ``PREFIX``: an entry recorded by an older hither (a code bundle's
hash, no prefix) cannot be compared, so it neither warns nor counts as a match.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import JobFunction

logger = logging.getLogger("hither.code_identity")

PREFIX = "id1:"
_MISSING = object()
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SCALARS = (type(None), bool, int, float, str, bytes, complex)

#: per code object (kept alive beside its entry, so an id is never reused while cached)
_code_digests: Dict[int, Tuple[Any, str]] = {}
_code_names: Dict[int, Tuple[Any, Tuple[str, ...]]] = {}
#: per module file: (size, mtime_ns) -> sha1 of its bytes
_file_digests: Dict[str, Tuple[Tuple[int, int], str]] = {}
#: per class object: the digest of its source (or qualified name)
_class_digests: Dict[int, Tuple[Any, str]] = {}


def is_by_value(fn: "JobFunction") -> bool:
    """Whether ``fn`` reaches a worker by value (cloudpickle) rather than by module and name:
    a ``__main__`` script's or notebook's function, a nested one, or one without a file."""
    return fn.module == "__main__" or "<locals>" in fn.qualname or not fn.source_file \
        or not os.path.isfile(fn.source_file)


def function_identity(fn: "JobFunction") -> str:
    """The code identity of ``fn`` now (see the module docstring)."""
    cached: Optional[str] = getattr(fn, "_code_identity", None)
    if cached is not None:  # by reference: fixed for the life of the function object
        return cached
    snap = getattr(fn, "_identity_reads", None)  # by value, as at its last run
    if snap is not None and _unchanged(snap[0]):
        ident: str = snap[1]
        return ident
    by_value = getattr(fn, "_identity_by_value", None)
    if by_value is None:
        by_value = is_by_value(fn)
        try:
            fn._identity_by_value = by_value  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - a JobFunction with slots
            pass
    if by_value:
        return _by_value_identity(fn)
    try:
        ident = PREFIX + _module_identity(fn)
    except Exception as exc:  # noqa: BLE001 - e.g. a module file gone unreadable
        logger.info("code identity of %s: its module files could not be read (%s: %s); "
                    "using its code and globals instead", fn.name, type(exc).__name__, exc)
        return _by_value_identity(fn, remember=False)
    try:
        fn._code_identity = ident  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - a JobFunction with slots
        pass
    return ident


def comparable(a: Optional[str], b: Optional[str]) -> bool:
    """Whether two recorded code hashes can be compared: both made by this scheme, or both
    by the older one (a code bundle's hash, as a compute resource still records)."""
    return bool(a and b and a.startswith(PREFIX) == b.startswith(PREFIX))


# ------------------------------------------------------------------ by reference
def file_digest(path: str) -> str:
    """sha1 of a file's bytes, remembered while its size and mtime stay."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing:" + path
    key = (st.st_size, st.st_mtime_ns)
    hit = _file_digests.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    with open(path, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()
    _file_digests[path] = (key, digest)
    return digest


def project_roots(fn: "JobFunction") -> List[str]:
    """The folders whose modules count as ``fn``'s own: its file's folder (the top of its
    package, where it is in one) and its ``@hi.local_modules`` folders."""
    assert fn.source_file
    folder = os.path.dirname(os.path.abspath(fn.source_file))
    while os.path.isfile(os.path.join(folder, "__init__.py")) and \
            os.path.isfile(os.path.join(os.path.dirname(folder), "__init__.py")):
        folder = os.path.dirname(folder)
    roots = [folder]
    for lm in fn.local_modules:
        path = lm if os.path.isabs(lm) else os.path.join(os.path.dirname(fn.source_file), lm)
        roots.append(os.path.normpath(os.path.abspath(path)))
    return [r.rstrip(os.sep) + os.sep for r in roots]


def _module_file(obj: Any) -> Optional[str]:
    """The source file of a module, or of the module a function or class comes from."""
    if isinstance(obj, types.ModuleType):
        mod: Any = obj
    else:
        name = getattr(obj, "__module__", None)
        mod = sys.modules.get(name) if isinstance(name, str) else None
    path = getattr(mod, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    return os.path.abspath(path)


def _local_files_of(values: Iterable[Any], roots: List[str], own: str) -> Set[str]:
    """Files under ``roots`` (other than ``own``) of the modules among ``values``, or that
    their functions and classes come from."""
    found: Set[str] = set()
    for v in values:
        v = getattr(v, "raw", v)
        if not isinstance(v, (types.ModuleType, types.FunctionType, type)):
            continue
        path = _module_file(v)
        if path and path != own and path.startswith(tuple(roots)):
            found.add(path)
    return found


def _module_identity(fn: "JobFunction") -> str:
    """sha1 of the module file and, transitively, of the local module files it uses."""
    assert fn.source_file
    own = os.path.abspath(fn.source_file)
    roots = project_roots(fn)
    raw = getattr(fn.raw, "__wrapped__", fn.raw)
    g = getattr(raw, "__globals__", {})
    names = code_names(raw.__code__) if hasattr(raw, "__code__") else ()
    todo = _local_files_of((g.get(n) for n in names), roots, own)
    # the same module's helpers: the whole file is hashed, their local imports count too
    for n in names:
        v = getattr(g.get(n), "raw", g.get(n))
        if isinstance(v, types.FunctionType) and v.__globals__ is g:
            todo |= _local_files_of((g.get(m) for m in code_names(v.__code__)), roots, own)
    seen: Set[str] = set()
    while todo:
        path = todo.pop()
        seen.add(path)
        mod = next((m for m in list(sys.modules.values())
                    if _module_file(m) == path), None)
        if mod is not None:
            todo |= _local_files_of(list(vars(mod).values()), roots, own) - seen
    h = hashlib.sha1(b"hither-identity-ref\0")
    h.update(f"{fn.module}\0{fn.qualname}\0{file_digest(own)}\0".encode())
    for path in sorted(seen):
        h.update(f"{path}\0{file_digest(path)}\0".encode())
    return h.hexdigest()


# ------------------------------------------------------------------ by value
#: values whose fingerprint cannot change while the object stays the same one
_FIXED = frozenset({type(None), bool, int, float, str, bytes, complex, types.ModuleType,
                    types.BuiltinFunctionType, types.CodeType, type})


#: what ``_reads`` saw of one function: the function, its code, defaults, closure cells'
#: contents, the global names it reads and their values (``_MISSING`` where unbound)
_Places = Tuple[Any, Any, Any, Tuple[Any, ...], Tuple[str, ...], Tuple[Any, ...]]


def _by_value_identity(fn: "JobFunction", remember: bool = True) -> str:
    """The identity of a by-value function, made now. With ``remember``, what it read is
    kept (``_identity_reads``) where none of it can change in place, so that a later run
    whose reads are all the same objects reuses it (``function_identity``: a walk over the
    places it read with ``is``, not a hash)."""
    places: List[_Places] = []
    # read before hashing: a global rebound meanwhile (another thread) makes a stale snapshot
    # that the next run finds changed, never a new value under the old identity
    fixed = remember and _reads(fn.raw, places, set())
    h = hashlib.sha1(b"hither-identity-val\0")
    _feed_function(h, fn.raw, set())
    ident = PREFIX + h.hexdigest()
    if fixed:
        try:
            fn._identity_reads = (places, ident)  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - a JobFunction with slots
            pass
    return ident


def _cell_contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _MISSING


def _unchanged(places: List[_Places]) -> bool:
    """Whether each place ``_reads`` read still holds the very object it held (``is``:
    ``1 == 1.0 == True`` fingerprint differently). Runs at every ``.run()``: plain loops,
    which cost less than ``map``/``zip`` objects for the few names a function reads."""
    for func, code, defaults, cells, names, values in places:
        if func.__code__ is not code or func.__defaults__ is not defaults:
            return False
        i = 0
        for cell in func.__closure__ or ():
            if _cell_contents(cell) is not cells[i]:
                return False
            i += 1
        g = func.__globals__
        i = 0
        for name in names:
            if g.get(name, _MISSING) is not values[i]:
                return False
            i += 1
    return True


def _reads(func: Any, places: List[_Places], seen: Set[int]) -> bool:
    """Append to ``places`` what ``func`` reads (code, defaults, closure cells, globals),
    recursing into by-value helpers; False when one of them could change in place (a
    list, an array...), so that the identity must be made again at each run."""
    if type(func).__name__ == "HitherFunction":
        func = func.raw
    if not isinstance(func, types.FunctionType) or func.__kwdefaults__:
        return False
    if func.__defaults__ and any(type(d) not in _FIXED for d in func.__defaults__):
        return False
    seen.add(id(func))
    names = code_names(func.__code__)
    cells = tuple(map(_cell_contents, func.__closure__ or ()))
    g = func.__globals__
    values = tuple(g.get(name, _MISSING) for name in names)
    places.append((func, func.__code__, func.__defaults__, cells, names, values))
    helpers = []
    for v in cells + values:
        if type(v) in _FIXED or v is _MISSING:
            continue
        inner = v.raw if type(v).__name__ == "HitherFunction" else v
        if not isinstance(inner, types.FunctionType):
            return False
        if getattr(inner, "__module__", None) in (None, "__main__") or "<locals>" in inner.__qualname__:
            helpers.append(inner)
        # else a function of a module: fingerprinted by its name and module file
    return all(id(inner) in seen or _reads(inner, places, seen) for inner in helpers)


def code_names(code: Any) -> Tuple[str, ...]:
    """The global (and attribute) names ``code`` and its nested code objects read."""
    hit = _code_names.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    names: List[str] = []
    stack = [code]
    while stack:
        c = stack.pop()
        names.extend(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    result = tuple(dict.fromkeys(names))
    _code_names[id(code)] = (code, result)
    return result


def _code_bytes(h: Any, code: Any) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                   code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    for k in code.co_consts:
        if isinstance(k, types.CodeType):
            _code_bytes(h, k)
        else:
            h.update(repr(k).encode())


def code_digest(func: Any) -> str:
    """sha1 of a function's own code: its source text where it has one (a file, a notebook
    cell), else its bytecode, constants and names, recursively. Cached per code object."""
    code = func.__code__
    hit = _code_digests.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    h = hashlib.sha1()
    try:
        h.update(b"src\0" + inspect.getsource(func).encode())
        if code.co_filename.startswith("<"):
            # a pseudo-file ("<string>", "<stdin>", "<ipython-input-...>"): the source found
            # for it may be another piece of code of the same name (Python 3.13 keeps exec'd
            # strings in linecache under "<string>"), so the bytecode counts too
            raise LookupError(code.co_filename)
    except Exception:  # noqa: BLE001 - no source: exec'd, stdin, a lost cell, a bad file
        h.update(b"code\0")
        _code_bytes(h, code)
    digest = h.hexdigest()
    _code_digests[id(code)] = (code, digest)
    return digest


def _feed_function(h: Any, func: Any, seen: Set[int]) -> None:
    """Feed a by-value function: code, defaults, closure cells, the globals it reads."""
    func = getattr(func, "raw", func)
    if not isinstance(func, types.FunctionType):
        feed_value(h, func, seen)
        return
    if id(func) in seen:
        h.update(b"rec\0")
        return
    seen.add(id(func))
    h.update(b"fn\0" + code_digest(func).encode())
    _feed_safely(h, "defaults", func.__defaults__, seen)
    _feed_safely(h, "kwdefaults", func.__kwdefaults__, seen)
    for cell in func.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            h.update(b"empty\0")
            continue
        _feed_safely(h, "closure", contents, seen)
    g = func.__globals__
    for name in code_names(func.__code__):
        v = g.get(name, _MISSING)
        if v is _MISSING:
            continue  # a builtin or an attribute name
        h.update(b"g\0" + name.encode() + b"\0")
        _feed_safely(h, name, v, seen)


def _feed_safely(h: Any, what: str, v: Any, seen: Set[int]) -> None:
    """``feed_value``, or the type's name where the value fails when inspected."""
    try:
        feed_value(h, v, seen)
    except Exception as exc:  # noqa: BLE001 - a user object that fails when inspected
        logger.debug("code identity: %s (%s) could not be fingerprinted: %s",
                     what, type(v).__name__, exc)
        h.update(b"?" + type(v).__qualname__.encode())


def feed_value(h: Any, v: Any, seen: Set[int]) -> None:
    """Feed a value's deterministic fingerprint (the same value in another process gives
    the same bytes, for everything but the last-resort ``repr``)."""
    t = type(v)
    if t in _SCALARS:
        h.update(b"%s\0%s\0" % (t.__name__.encode(), repr(v).encode()))
        return
    handler = _FEEDERS.get(t)
    if handler is None:
        handler = _feeder_for(v)
    handler(h, v, seen)


def _feed_sequence(h: Any, v: Any, seen: Set[int]) -> None:
    h.update(b"%s[%d\0" % (type(v).__name__.encode(), len(v)))
    for x in v:
        feed_value(h, x, seen)


def _feed_dict(h: Any, v: Any, seen: Set[int]) -> None:
    h.update(b"dict{%d\0" % len(v))
    for k, x in v.items():
        feed_value(h, k, seen)
        feed_value(h, x, seen)


def _feed_set(h: Any, v: Any, seen: Set[int]) -> None:
    parts = []
    for x in v:
        sub = hashlib.sha1()
        feed_value(sub, x, seen)
        parts.append(sub.digest())
    h.update(b"set{%d\0" % len(v) + b"".join(sorted(parts)))


def _feed_module(h: Any, v: Any, seen: Set[int]) -> None:
    path = _module_file(v)
    h.update(b"mod\0" + v.__name__.encode() + b"\0")
    if path and v.__name__ != "hither" and not v.__name__.startswith("hither."):
        h.update(file_digest(path).encode())


def _feed_class(h: Any, v: Any, seen: Set[int]) -> None:
    hit = _class_digests.get(id(v))
    if hit is None or hit[0] is not v:
        name = f"{v.__module__}.{v.__qualname__}"
        try:
            digest = hashlib.sha1((name + "\0" + inspect.getsource(v)).encode()).hexdigest()
        except (OSError, TypeError):
            digest = name
        hit = (v, digest)
        _class_digests[id(v)] = hit
    h.update(b"cls\0" + hit[1].encode())


def _feed_callable(h: Any, v: Any, seen: Set[int]) -> None:
    """A function: by value where it belongs to a script or has no module; by name else."""
    module = getattr(v, "__module__", None)
    if isinstance(v, types.FunctionType) and (module in (None, "__main__") or "<locals>" in v.__qualname__):
        _feed_function(h, v, seen)
        return
    path = _module_file(v)
    h.update(f"ref\0{module}.{getattr(v, '__qualname__', '?')}\0".encode())
    if path and not str(module).startswith("hither"):
        h.update(file_digest(path).encode())


def _feed_array(h: Any, v: Any, seen: Set[int]) -> None:
    h.update(b"nd\0%s\0%s\0" % (str(v.dtype).encode(), repr(v.shape).encode()))
    if v.dtype.hasobject:
        _feed_sequence(h, v.tolist(), seen)
    else:
        h.update(hashlib.sha1(v.tobytes()).digest())


def _feed_other(h: Any, v: Any, seen: Set[int]) -> None:
    import pickle

    if id(v) in seen:
        h.update(b"rec\0")
        return
    seen.add(id(v))
    try:
        data = pickle.dumps(v, protocol=4)
    except Exception:  # noqa: BLE001 - any pickling failure: try harder, then repr
        try:
            import cloudpickle

            data = cloudpickle.dumps(v, protocol=4)
        except Exception:  # noqa: BLE001
            try:
                text = _ADDRESS.sub("", repr(v))
            except Exception:  # noqa: BLE001 - a broken __repr__
                text = "?"
            logger.debug("code identity: a global of type %s is fingerprinted by its repr",
                         type(v).__name__)
            data = f"{type(v).__module__}.{type(v).__qualname__}\0{text}".encode()
    h.update(b"obj\0" + hashlib.sha1(data).digest())


def _feed_hither_function(h: Any, v: Any, seen: Set[int]) -> None:
    _feed_function(h, v.raw, seen)


def _feeder_for(v: Any) -> Callable[[Any, Any, Set[int]], None]:
    if isinstance(v, type):
        return _feed_class
    if hasattr(v, "raw") and hasattr(v, "version") and isinstance(v.raw, types.FunctionType):
        return _feed_hither_function
    t = type(v)
    if t.__module__ == "numpy" and t.__name__ == "ndarray":
        return _feed_array
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return _feed_callable
    if isinstance(v, (list, tuple)):
        return _feed_sequence
    if isinstance(v, dict):
        return _feed_dict
    if isinstance(v, (set, frozenset)):
        return _feed_set
    return _feed_other


_FEEDERS: Dict[type, Callable[[Any, Any, Set[int]], None]] = {
    list: _feed_sequence, tuple: _feed_sequence, dict: _feed_dict, set: _feed_set,
    frozenset: _feed_set, types.ModuleType: _feed_module, types.FunctionType: _feed_callable,
    types.BuiltinFunctionType: _feed_callable,
}
