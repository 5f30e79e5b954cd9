"""hither-core's module graph has no import cycle, counting function-level and type-only
imports (the layer contracts in .importlinter are checked by `lint-imports` in CI; this
test catches a cycle inside one layer, e.g. between two handlers)."""
from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the workspace env)")


def test_no_import_cycles():
    g = grimp.build_graph("hither", include_external_packages=False)
    cycles = []
    for a in sorted(g.modules):
        for b in g.find_modules_directly_imported_by(a):
            if a == "hither" or b == "hither":
                continue  # the package surface re-exports; nothing below imports it
            chain = g.find_shortest_chain(importer=b, imported=a)
            if chain and "hither" not in chain:
                cycles.append(" -> ".join((a,) + tuple(chain)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_runtime_imports_no_other_hither_module():
    # hither.runtime ships alone (runner.py): its modules import only each other
    g = grimp.build_graph("hither", include_external_packages=False)
    runtime = g.find_descendants("hither.runtime") | {"hither.runtime"}
    assert len(runtime) > 5
    for m in sorted(runtime):
        assert g.find_modules_directly_imported_by(m) <= runtime, m
