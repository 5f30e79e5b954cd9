"""The shape the code promises (issue 18): small modules that say what they hold, short
functions, and plugin packages that reach no private name of another module."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = ROOT / "packages" / "hither-core" / "src" / "hither"
PLUGIN_SRCS = sorted(p for p in (ROOT / "packages").glob("hither-*/src/hither_*") if p.is_dir())
ALL_SRCS = [CORE] + PLUGIN_SRCS
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules(*roots: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for r in roots for p in r.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(p: pathlib.Path) -> str:
    return str(p.relative_to(ROOT))


def test_every_module_says_what_it_holds() -> None:
    missing = []
    for p in _modules(*ALL_SRCS):
        tree = ast.parse(p.read_text())
        doc = ast.get_docstring(tree)
        if p.name == "__about__.py":
            continue
        if not doc or not doc.strip().splitlines()[0].strip():
            missing.append(_rel(p))
    assert not missing, "modules without a first line saying what they hold:\n" + "\n".join(missing)


def test_core_modules_are_small() -> None:
    big = [f"{_rel(p)}: {n} lines" for p in _modules(CORE)
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, f"hither-core modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(big)


def test_core_functions_are_short() -> None:
    long = []
    for p in _modules(CORE):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{_rel(p)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"hither-core functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def _private_imports(p: pathlib.Path) -> list[str]:
    """`from M import _name` where M is another module (a private name of it)."""
    found = []
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{_rel(p)}:{node.lineno} from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")
    return found


@pytest.mark.parametrize("src", PLUGIN_SRCS, ids=lambda p: p.name)
def test_plugin_package_imports_no_private_name(src: pathlib.Path) -> None:
    found = [f for p in _modules(src) for f in _private_imports(p)]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_every_package_is_typed() -> None:
    assert [p for p in ALL_SRCS if not (p / "py.typed").exists()] == []
