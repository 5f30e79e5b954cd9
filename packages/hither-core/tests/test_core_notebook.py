"""Notebooks are a first-class client (issue 19): a function defined in a cell of a real
Jupyter kernel (nbclient, ipykernel) runs on the Default and Parallel handlers; editing the
cell and running it again runs the new body and globals, with no "rename" warning, and the
job cache warns (at the notebook's line) or reruns per ``check_code``."""
import json
import os
import sys

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

_SETUP = """
import json, warnings
import hither as hi
caught = []
warnings.simplefilter("always")
warnings.showwarning = lambda m, c, f, l, *a, **k: caught.append([str(m), f, l])
ph = hi.ParallelJobHandler(num_workers=1)
handlers = {"default": hi.DefaultJobHandler(), "parallel": ph}
def run_all(check_code):
    cache = hi.JobCache(path=CACHE, check_code=check_code)
    out = {}
    for kind, jh in handlers.items():
        with hi.Config(job_handler=jh):
            out[kind] = nb_scaled.run(x=10).wait()  # plain run
        with hi.Config(job_handler=jh, job_cache=cache):
            out[kind + "+cache"] = nb_scaled.run(x=10).wait()
    return out
"""

_DEFINE = """
SCALE = {scale}
@hi.function('nb_scaled', '0.1.0')
def nb_scaled(x):
    return x * SCALE + {offset}
"""


def _kernel_spec(tmp_path) -> str:
    """A kernel spec running this test's own interpreter, found through JUPYTER_PATH."""
    d = tmp_path / "jupyter" / "kernels" / "hither-test"
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hither test", "language": "python"}))
    return str(tmp_path / "jupyter")


def _output(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_a_notebook_cell_edited_and_run_again(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", _kernel_spec(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"CACHE = {str(tmp_path / 'jc')!r}\n" + _SETUP),
                nbformat.v4.new_code_cell(_DEFINE.format(scale=2, offset=0)),
                nbformat.v4.new_code_cell("print(json.dumps([run_all(False), caught])); caught.clear()")]
    client = nbclient.NotebookClient(nb, kernel_name="hither-test", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
        first, warned = json.loads(_output(nb.cells[2]))
        assert set(first.values()) == {20} and warned == []
        # the user edits the cell (body and a global) and runs it again, then the run cell
        nb.cells[1].source = _DEFINE.format(scale=3, offset=1)
        client.execute_cell(nb.cells[1], 1)
        nb.cells[2].outputs = []
        client.execute_cell(nb.cells[2], 2)
        second, warned = json.loads(_output(nb.cells[2]))
        nb.cells[2].source = "print(json.dumps([run_all(True), caught])); caught.clear()"
        nb.cells[2].outputs = []
        client.execute_cell(nb.cells[2], 2)
        third, warned_check = json.loads(_output(nb.cells[2]))
    # the new code runs everywhere; the stale cached 20 comes back with a warning
    assert second == {"default": 31, "default+cache": 20, "parallel": 31, "parallel+cache": 20}
    assert not [w for w in warned if "registered twice" in w[0]], warned
    different = [w for w in warned if "made by different code" in w[0]]
    assert len(different) == 2, warned
    assert all(w[1] != __file__ and "/hither/" not in w[1] for w in different), different
    # check_code=True: a miss, the new body runs (and is then the entry)
    assert third == {"default": 31, "default+cache": 31, "parallel": 31, "parallel+cache": 31}
    assert warned_check == []
