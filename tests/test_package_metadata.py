"""The packaging of every package under packages/: a LICENSE matching the license
expression, classifiers (Python 3.10-3.13, Linux, typed, scientific), project URLs,
``py.typed``, READMEs with no link that is dead on a package index, an extra declaring what
``hither.testing`` imports, one range per shared dependency, and the local packages each
one needs named in the README's install-from-a-checkout command. Read from each
pyproject.toml and source tree (what the wheel's metadata is built from)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
REPO_URL = "https://github.com/hither-dev/hither"
PACKAGES = ["hither-core", "hither-cache", "hither-store", "hither-remote", "hither-slurm", "hither-container",
            "hither-monitor"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: dependencies more than one package may declare: the one range each must use
SHARED = {"pydantic": ">=2.5,<3", "numpy": ">=1.22", "fsspec": ">=2023", "pymongo": ">=4.6",
          "click": ">=8", "docker": ">=7", "hypothesis": ">=6.100", "pytest": ">=8"}


def project(name: str) -> Dict[str, object]:
    with open(ROOT / "packages" / name / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def requirements(meta: Dict[str, object]) -> List[str]:
    extras = meta.get("optional-dependencies") or {}
    return [*meta.get("dependencies", []), *(r for reqs in extras.values() for r in reqs)]  # type: ignore


def split(req: str) -> "tuple[str, str]":
    """("name", "specifier") of a requirement, extras and markers left out."""
    req = req.split(";")[0].strip()
    m = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", req)
    assert m, req
    return m.group(1).lower(), m.group(3).replace(" ", "")


@pytest.mark.parametrize("name", PACKAGES)
def test_license_file_matches_the_expression(name: str) -> None:
    meta = project(name)
    assert meta["license"] == "Apache-2.0"
    assert meta.get("license-files") == ["LICENSE"]
    text = (ROOT / "packages" / name / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    # PEP 639: the expression says it; PyPI refuses a License :: classifier beside it
    assert not [c for c in meta["classifiers"] if c.startswith("License ::")]  # type: ignore


@pytest.mark.parametrize("name", PACKAGES)
def test_classifiers_and_urls(name: str) -> None:
    meta = project(name)
    classifiers = set(meta["classifiers"])  # type: ignore
    assert {f"Programming Language :: Python :: {v}" for v in PYTHONS} <= classifiers
    assert {"Operating System :: POSIX :: Linux", "Typing :: Typed", "Topic :: Scientific/Engineering"} <= classifiers
    declared = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert min(declared, key=lambda v: int(v.split(".")[1])) == "3.10"
    assert meta["requires-python"] == ">=3.10"  # the oldest classifier is the oldest allowed
    urls = meta["urls"]  # type: ignore
    assert urls["Homepage"] == REPO_URL and urls["Issues"] == f"{REPO_URL}/issues"  # type: ignore
    assert urls["Source"] == f"{REPO_URL}/tree/main/packages/{name}"  # type: ignore


@pytest.mark.parametrize("name", PACKAGES)
def test_py_typed_is_in_the_package(name: str) -> None:
    src = ROOT / "packages" / name / "src"
    (package,) = [p for p in src.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                  and not p.name.endswith(".egg-info")]
    assert (package / "py.typed").is_file()


@pytest.mark.parametrize("name", PACKAGES)
def test_readme_has_no_relative_links(name: str) -> None:
    """A package README is the package's page on the index: a relative link is dead there."""
    text = (ROOT / "packages" / name / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    relative = [t for t in targets if not t.startswith(("https://", "http://", "#", "mailto:"))]
    assert relative == []
    for t in targets:
        if t.startswith(REPO_URL + "/blob/main/"):  # a file of the repository: it exists
            path = t[len(REPO_URL + "/blob/main/"):].split("#")[0]
            assert (ROOT / path).is_file(), t


def test_core_readme_says_what_it_is_how_to_install_and_shows_an_example() -> None:
    text = (ROOT / "packages" / "hither-core" / "README.md").read_text()
    assert "pip install hither-core" in text and "pip install 'hither-core[testing]'" in text
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example and 5 <= len(example.group(1).strip().splitlines()) <= 12
    assert REPO_URL in text


def test_the_testing_extra_declares_what_hither_testing_imports() -> None:
    meta = project("hither-core")
    declared = {split(r)[0] for r in [*meta["dependencies"], *meta["optional-dependencies"]["testing"]]}  # type: ignore
    # what importing a module of hither.testing needs (its top level, not a function's own
    # import: hither.testing.services imports pymongo only where a MongoDB test asks for it)
    imported = set()
    for py in (ROOT / "packages" / "hither-core" / "src" / "hither" / "testing").glob("*.py"):
        tree = ast.parse(py.read_text())
        top = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for n in ast.walk(stmt)]
        top += [n for cls in tree.body if isinstance(cls, ast.ClassDef) for stmt in cls.body
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(stmt)]
        for node in top:
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "hither"}
    # numpy is a dependency of hither-core itself; pytest and hypothesis come with the extra
    assert {"pytest", "hypothesis"} <= third_party
    assert {m.replace("_", "-") for m in third_party} <= declared


def test_shared_dependencies_have_one_range() -> None:
    seen: Dict[str, Dict[str, str]] = {}
    for name in PACKAGES:
        for req in requirements(project(name)):
            dep, spec = split(req)
            seen.setdefault(dep, {})[name] = spec
    for dep, by_package in seen.items():
        if dep.startswith("hither-"):
            assert set(by_package.values()) == {">=0.1,<0.2"}, (dep, by_package)
        elif dep in SHARED:
            normalized = {",".join(sorted(s.split(","))) for s in by_package.values()}
            assert normalized == {",".join(sorted(SHARED[dep].split(",")))}, (dep, by_package)
        elif len(by_package) > 1:
            assert len(set(by_package.values())) == 1, (dep, by_package)


def test_the_readme_installs_every_local_package_a_package_needs() -> None:
    """The README's install-from-a-checkout lines name, with each local package, the local
    packages it depends on (else pip looks for them on the index)."""
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("pip install ./packages/")]
    assert lines
    for line in lines:
        named = set(re.findall(r"\./packages/(hither-[a-z]+|hither-\*)", line))
        if "hither-*" in named:
            continue
        for pkg in named:
            meta = project(pkg)
            extras = set(re.findall(rf"{pkg}\[([a-z,]+)\]", line))
            reqs = list(meta.get("dependencies", []))
            for extra in extras:
                reqs += meta["optional-dependencies"][extra]  # type: ignore
            needed = {split(r)[0] for r in reqs if split(r)[0].startswith("hither-")}
            assert needed <= named, (line, pkg, needed - named)
