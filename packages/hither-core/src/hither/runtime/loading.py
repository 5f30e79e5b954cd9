"""Loading a job's code: its function from the unpacked code bundle (``load_job_function``),
and a script's definitions without its top-level work (``load_script_definitions``).
Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import os
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    import ast
    from typing import Any, Callable, Dict, Optional, Set

# ------------------------------------------------------------------ loading the code


def _root_name(node: ast.AST) -> Optional[str]:
    import ast

    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _module_aliases(tree: ast.Module) -> Set[str]:
    """Names bound to imported modules (``import numpy as np`` -> np), hither's excluded."""
    import ast

    names = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name.split(".")[0] != "hither":
                    names.add(a.asname or a.name.split(".")[0])
    return names


def _definition_only(stmt: ast.stmt, modules: Set[str]) -> bool:
    """Whether a top-level statement only defines things: imports, functions, classes, and
    assignments whose calls all go to imported modules (``logger = logging.getLogger()``,
    ``DATA = os.path.join(...)``), never to hither or the script's own functions."""
    import ast

    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        value = stmt.value
        return value is None or all(_root_name(n.func) in modules
                                    for n in ast.walk(value) if isinstance(n, ast.Call))
    if isinstance(stmt, ast.Try):
        return all(_definition_only(s, modules) or isinstance(s, ast.Pass) for s in stmt.body)
    return False


def load_script_definitions(path: str, module_name: str = "__hither_main__") -> types.ModuleType:
    """Load a script's definitions only: imports, functions, classes and assignments
    that call only imported modules; other top-level statements (the script's own work, its
    ``if __name__ == '__main__':`` block) are skipped, so loading never re-runs a pipeline."""
    import ast  # only for a script's definitions: a module's function does not need it

    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    modules = _module_aliases(tree)
    tree.body = [s for s in tree.body if _definition_only(s, modules)]
    mod = types.ModuleType(module_name)
    mod.__file__ = path
    sys.modules[module_name] = mod
    exec(compile(tree, path, "exec"), mod.__dict__)
    return mod


def load_job_function(spec: Dict[str, Any], code_dir: str) -> Any:
    """The raw function of a job spec, from its extracted code bundle."""
    for p in reversed(spec.get("sys_paths") or [""]):
        full = os.path.join(code_dir, p) if p else code_dir
        if full not in sys.path:
            sys.path.insert(0, full)
    if spec["module"] == "__main__":
        mod = load_script_definitions(os.path.join(code_dir, spec["module_relpath"]))
    else:
        import importlib

        mod = importlib.import_module(spec["module"])
    obj = mod
    for part in spec["qualname"].split("."):
        obj = getattr(obj, part)
    return getattr(obj, "raw", obj)


def set_script_globals(fn: Any, spec: Dict[str, Any], decode: Callable[[Any], Any]) -> None:
    """Set a ``__main__`` job's shipped globals (``spec["script_globals"]``: their values in
    the caller when the job was handed off, wire-encoded) in the script the runner loaded,
    over what its definitions assigned. Decoded after loading, so an Enum of the script
    comes back as its member."""
    shipped = spec.get("script_globals")
    if not shipped or spec.get("module") != "__main__":
        return
    if not isinstance(shipped, dict):
        raise ValueError("spec.json: script_globals must be an object of name -> value, not %s"
                         % type(shipped).__name__)
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        raise ValueError("the job's function %r has no globals to set its script's values in"
                         % (spec.get("qualname"),))
    for name, encoded in shipped.items():
        namespace[name] = decode(encoded)
