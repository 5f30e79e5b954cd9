"""The grammar of hither values, stdlib only: the kind of a value, one ``Visitor`` that walks a
value (with its argument path, for error messages) and one ``WireVisitor`` that walks its
JSON wire form. Every check, copy, hash and encoding of values is written on these.

Kinds (``kind_of(v)``, decided by the value's class and remembered per class; tested in the
order numpy, ref, job, typed, file; an object of no kind by the class its ``__class__`` claims):

    none bool int float str        the JSON scalars (exact classes; ``bool`` is not ``int``)
    list tuple dict                containers (exact classes; tuple is kept apart from list)
    ndarray npscalar               numpy arrays (subclasses too) and numpy scalars, recognised
                                   without importing numpy (no numpy loaded: none can exist)
    file                           ``hi.File`` or the runner's stand-in: a class with
                                   ``__fspath__`` and ``uri``
    ref                            a result held in a store (class marker ``_hither_ref``)
    job                            a ``hither`` Job (class marker ``_hither_job``)
    typed                          an instance of an ``int``/``float``/``str`` subclass (Enums...)
    other                          anything else (each walk decides: keep it, or refuse it)

A new kind is added here (a constant, its name, a test in ``classify``) and then reaches every
walk through its ``visit_<kind>`` method, or the walk's ``leaf`` until it defines one: the walks
that copy keep such a value as is, those that check, hash or encode refuse it.

Python 3.8 syntax, no import of the rest of hither: the runner ships with it.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, List, Tuple

(NONE, BOOL, INT, FLOAT, STR, LIST, TUPLE, DICT, NDARRAY, NPSCALAR, FILE, REF, JOB, TYPED,
 OTHER) = range(15)
KIND_NAMES = ("none", "bool", "int", "float", "str", "list", "tuple", "dict", "ndarray",
              "npscalar", "file", "ref", "job", "typed", "other")

#: the wire format's tag key (``{"_hither": "tuple", ...}``)
TAG = "_hither"

_BUILTIN = {type(None): NONE, bool: BOOL, int: INT, float: FLOAT, str: STR, list: LIST,
            tuple: TUPLE, dict: DICT}
#: class -> kind: the builtins, then every class ``kind_of`` met (bounded; classes of no kind
#: are never in it). Walks read it for speed (``KIND_BY_CLASS.get(type(v))``, else ``kind_of(v)``).
KIND_BY_CLASS: Dict[type, int] = dict(_BUILTIN)
_MAX_REMEMBERED = 2048


def classify(t: type) -> int:
    """The kind of the instances of class ``t`` (not remembered; ``kind_of`` remembers)."""
    kind = _BUILTIN.get(t)
    if kind is not None:
        return kind
    np = sys.modules.get("numpy")  # a numpy value means numpy is loaded
    if np is not None and issubclass(t, np.ndarray):
        return NDARRAY
    if np is not None and issubclass(t, np.generic):
        return NPSCALAR
    if getattr(t, "_hither_ref", False) is True:
        return REF
    if getattr(t, "_hither_job", False) is True:
        return JOB
    if issubclass(t, (int, float, str)):
        return TYPED
    if hasattr(t, "__fspath__") and hasattr(t, "uri"):
        return FILE
    return OTHER


def kind_of(v: Any) -> int:
    """The kind of ``v`` (one of the constants above).

    An object of no kind is classified again by the class its ``__class__`` claims, as
    ``isinstance`` does (a proxy standing for an array, say); reading it may raise. Such
    classes are not remembered, so the fast lookup ``KIND_BY_CLASS.get(type(v))`` never answers
    for them."""
    t = type(v)
    kind = KIND_BY_CLASS.get(t)
    if kind is None:
        kind = classify(t)
        if kind == OTHER:
            c = v.__class__
            return OTHER if c is t else classify(c)
        if len(KIND_BY_CLASS) >= _MAX_REMEMBERED:  # many classes met (made at run time): start over
            KIND_BY_CLASS.clear()
            KIND_BY_CLASS.update(_BUILTIN)
        KIND_BY_CLASS[t] = kind
    return kind


def format_path(path: Any) -> str:
    """The text of an argument path: ``x[2]['a']``. A path is its root's name (a str) or a
    pair ``(parent path, key)``, made per item only as a tuple: formatted only for errors."""
    keys: List[Any] = []
    while type(path) is tuple:
        path, key = path
        keys.append(key)
    return str(path) + "".join("[%r]" % (k,) for k in reversed(keys))


def path_depth(path: Any) -> int:
    """How many containers down ``path`` leads."""
    depth = 0
    while type(path) is tuple:
        path = path[0]
        depth += 1
    return depth


class Visitor(object):
    """One walk over a hither value: ``visit(v, path)`` calls ``visit_<kind>(v, path)``.

    Leaves without a method of their own go to ``leaf`` (default: the value itself).
    Containers by default are copied, each item visited with its path: ``visit_list``,
    ``visit_tuple`` and ``visit_dict`` return a new list, tuple or dict of the results.
    Subclasses override what they need; the dispatch table is built once per class. A
    container method loops over its items itself (``table[kind](self, item, (path, key))``
    with ``kind = KIND_BY_CLASS.get(type(item))``, else ``kind_of(item)``), so a walk costs one
    Python frame per level of nesting (values may nest ``MAX_DEPTH`` = 500 levels deep).
    """

    __slots__ = ()  # subclasses may declare theirs: a walk's state is made once per walk
    _table: Tuple[Callable[..., Any], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._table = tuple(getattr(cls, "visit_" + name, None) or cls.leaf for name in KIND_NAMES)

    def visit(self, v: Any, path: Any = "value") -> Any:
        kind = KIND_BY_CLASS.get(type(v))
        if kind is None:
            kind = kind_of(v)
        return self._table[kind](self, v, path)

    def leaf(self, v: Any, path: Any) -> Any:
        return v

    def visit_list(self, v: Any, path: Any) -> Any:
        table, kinds = self._table, KIND_BY_CLASS
        out: List[Any] = []
        for i, x in enumerate(v):
            kind = kinds.get(type(x))
            out.append(table[kind_of(x) if kind is None else kind](self, x, (path, i)))
        return out

    def visit_tuple(self, v: Any, path: Any) -> Any:
        table, kinds = self._table, KIND_BY_CLASS
        out: List[Any] = []
        for i, x in enumerate(v):
            kind = kinds.get(type(x))
            out.append(table[kind_of(x) if kind is None else kind](self, x, (path, i)))
        return tuple(out)

    def visit_dict(self, v: Any, path: Any) -> Any:
        table, kinds = self._table, KIND_BY_CLASS
        out: Dict[Any, Any] = {}
        for k, x in v.items():
            kind = kinds.get(type(x))
            out[k] = table[kind_of(x) if kind is None else kind](self, x, (path, k))
        return out


Visitor._table = tuple(getattr(Visitor, "visit_" + name, None) or Visitor.leaf for name in KIND_NAMES)


class WireVisitor(object):
    """One walk over a value in the JSON wire form: lists, plain dicts and scalars, and the
    tagged dicts (``{"_hither": tag, ...}``) that stand for everything else.

    ``visit(d)`` calls ``visit_list``, ``visit_dict`` (untagged), ``tag_<tag>(d, path)``
    when the class has one for that tag, else ``visit_tagged(tag, d, path)``, or
    ``visit_scalar``. By default containers are copied with their items visited, a tagged
    dict with its fields visited (so nodes nested in them are reached: the items of a tuple,
    the 0-d array of a structured scalar...) and scalars kept. Lists and dicts are
    recognised with ``isinstance`` (documents may come back as dict subclasses). As with
    ``Visitor``, a method loops over items itself: two Python frames per level of nesting.
    """

    __slots__ = ()
    _tags: Dict[str, Callable[..., Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._tags = {name[4:]: getattr(cls, name) for name in dir(cls) if name.startswith("tag_")}

    def visit(self, d: Any, path: Any = "value") -> Any:
        if isinstance(d, list):
            return self.visit_list(d, path)
        if isinstance(d, dict):
            tag = d.get(TAG)
            if tag is None:
                return self.visit_dict(d, path)
            method = self._tags.get(tag) if type(tag) is str else None
            if method is not None:
                return method(self, d, path)
            return self.visit_tagged(tag, d, path)
        return self.visit_scalar(d, path)

    def visit_scalar(self, d: Any, path: Any) -> Any:
        return d

    def visit_list(self, d: Any, path: Any) -> Any:
        visit = self.visit
        out: List[Any] = []
        for i, x in enumerate(d):
            out.append(visit(x, (path, i)))
        return out

    def visit_dict(self, d: Any, path: Any) -> Any:
        visit = self.visit
        out: Dict[Any, Any] = {}
        for k, x in d.items():
            out[k] = visit(x, (path, k))
        return out

    def visit_tagged(self, tag: Any, d: Any, path: Any) -> Any:
        """A copy of the tagged dict ``d`` with its fields visited (they stand for the value
        itself, so they keep its path: a tuple's items get ``path[i]``). The items of a
        ``"dict"`` node (a dict with a ``"_hither"`` key of its own) are values, not a node."""
        visit = self.visit
        if tag == "dict":
            return dict(d, items=self.visit_dict(d["items"], path))
        out: Dict[Any, Any] = {}
        for k, x in d.items():
            out[k] = visit(x, path)
        return out
