"""The warm loop and the lifeline with the runtime as shipped (runner.py: a zip), on this
host's Python, no container: the loop loads a runtime once per content and runs job
directories with it; the lifeline runs runner.py as ``python3 runner.py JOB_DIR`` would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

import hither_container
from hither.runtime import runner_bytes, write_runner

pytestmark = pytest.mark.timeout(60)
HERE = os.path.dirname(os.path.abspath(hither_container.__file__))


def _job_dir(path, runner: bytes = b"") -> str:
    os.makedirs(os.path.join(path, "arrays"))
    spec = {"module": "__main__", "qualname": "double", "module_relpath": "s.py", "sys_paths": [""],
            "handler": "t", "function_name": "double"}
    with open(os.path.join(path, "spec.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(path, "args.json"), "w") as f:
        json.dump({"x": 21}, f)
    with zipfile.ZipFile(os.path.join(path, "code.zip"), "w") as z:
        z.writestr("s.py", "def double(x):\n    return x * 2\n")
    if runner:
        with open(os.path.join(path, "runner.py"), "wb") as f:
            f.write(runner)
    else:
        write_runner(os.path.join(path, "runner.py"))
    return str(path)


def _other_runtime(tmp_path) -> bytes:
    """The shipped runtime with one more (harmless) entry: another content, the same program."""
    path = os.path.join(str(tmp_path), "other.zip")
    with open(path, "wb") as f:
        f.write(runner_bytes())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("_hither_runtime/extra.py", "")
    with open(path, "rb") as f:
        return f.read()


def test_the_warm_loop_loads_a_runtime_once_per_content(tmp_path):
    a1, a2 = _job_dir(tmp_path / "a1"), _job_dir(tmp_path / "a2")
    b = _job_dir(tmp_path / "b", _other_runtime(tmp_path))
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    from hither_container.warm import install_runtime  # the host's side: a zip per content
    ra1, ra2, rb = (os.path.join(str(ctl), "runtime-%s.zip" % install_runtime(str(ctl), d))
                    for d in (a1, a2, b))
    assert ra1 == ra2 != rb
    script = textwrap.dedent(f"""
        import importlib.util, os, sys
        spec = importlib.util.spec_from_file_location("warm_loop", {os.path.join(HERE, "warm_loop.py")!r})
        loop = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loop)
        ns1 = loop._runner_namespace({ra1!r})
        run1 = sys.modules["_hither_runtime.run"]
        ns2 = loop._runner_namespace({ra2!r})
        assert ns2 is ns1 and sys.modules["_hither_runtime.run"] is run1, "loaded twice"
        assert run1.__file__.startswith(os.path.join({str(ctl)!r}, "runtime-")), run1.__file__
        assert ns1["main"]([{a1!r}]) == 0
        nsb = loop._runner_namespace({rb!r})
        assert nsb is not ns1 and sys.modules["_hither_runtime.run"] is not run1
        assert nsb["main"]([{b!r}]) == 0
        assert ns1["main"]([{a2!r}]) == 0  # the first runtime still runs with its own modules
        print(len([n for n in os.listdir({str(ctl)!r}) if n.startswith("runtime-")]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2"]
    for d in (a1, a2, b):
        with open(os.path.join(d, "result.json")) as f:
            assert json.load(f)["value"] == 42


def test_the_lifeline_runs_the_zipped_runner(tmp_path):
    d = _job_dir(tmp_path / "job")
    with open(os.path.join(HERE, "lifeline.py")) as f:
        source = f.read()
    # stdin stays open (a pipe we hold) while the job runs: the lifeline does not cut
    proc = subprocess.Popen([sys.executable, "-I", "-c", source, os.path.join(d, "runner.py"), d],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=d)
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.stdin.close()
    assert code == 0, proc.stderr.read()
    proc.stderr.close()
    with open(os.path.join(d, "result.json")) as f:
        assert json.load(f)["value"] == 42
