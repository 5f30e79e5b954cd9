"""Code identity on the container path (issue 19): a module edited and reloaded runs its new
code in the container on the Default and Parallel handlers, and the job cache compares the
same identity as in the process (a used helper counts, an unrelated file does not); a
script's function runs there with its globals' values in the caller."""
import importlib
import os
import subprocess
import sys
import uuid
import warnings

import pytest

import hither as hi
from hither.testing.scripts import check_script_globals_output, write_script_globals_program

pytestmark = pytest.mark.slow


@pytest.fixture
def module(tmp_path, docker_image):
    name = "cid" + uuid.uuid4().hex[:8]
    d = tmp_path / name
    d.mkdir()
    (d / f"{name}.py").write_text(
        "import hither as hi\n\n"
        f"@hi.container('{docker_image}')\n"
        f"@hi.function('{name}', '0.1.0')\n"
        f"def {name}(x):\n    return x + 1\n")
    sys.path.insert(0, str(d))
    mod = importlib.import_module(name)
    yield name, d, mod
    sys.path.remove(str(d))
    sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", ["default", "parallel"])
def test_a_reloaded_module_runs_its_new_code_in_a_container(module, kind, tmp_path):
    name, d, mod = module
    jh = hi.DefaultJobHandler() if kind == "default" else hi.ParallelJobHandler(num_workers=1)
    cache = str(tmp_path / "jc")
    try:
        with hi.Config(job_handler=jh, container=True, job_cache=hi.JobCache(path=cache)):
            assert getattr(mod, name).run(x=1).wait() == 2
        (d / "other.py").write_text("X = 1\n")  # unrelated: no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mod = importlib.reload(mod)
            with hi.Config(job_handler=jh, container=True, job_cache=hi.JobCache(path=cache)):
                assert getattr(mod, name).run(x=1).wait() == 2
        (d / f"{name}.py").write_text((d / f"{name}.py").read_text().replace("x + 1", "x * 10"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a reload is not a name clash
            mod = importlib.reload(mod)
        with hi.Config(job_handler=jh, container=True, job_cache=hi.JobCache(path=cache, check_code=True)):
            assert getattr(mod, name).run(x=1).wait() == 10
    finally:
        jh.shutdown()


def test_a_script_function_runs_with_its_callers_globals_in_a_container(tmp_path, docker_image):
    # the script of issue 19: SCALE changed in the main block, a helper reading a global
    # the file never assigns, a global array; the container's runner loads the script's
    # definitions only, so before script_globals it saw SCALE = 2 (and no OFFSET)
    script = write_script_globals_program(tmp_path / "script.py", "scaled_ct", config=f"container={docker_image!r}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    check_script_globals_output(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                               timeout=300, cwd=str(tmp_path), env=env))
