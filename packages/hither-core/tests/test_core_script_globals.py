"""A script's function on the outside path (a job directory run by ``python -m hither.runtime``,
and the same job packed into a document and unpacked) runs with its globals' values in the
caller when the job was handed off, its helpers' globals and a global array included (issue
19); a global that is not plain data stays as the file defines it; a huge one is refused."""
import json
import os
import subprocess
import sys
import textwrap

_SCRIPT = """
import enum, json, os, subprocess, sys, types
import numpy as np
import hither as hi
from hither.content.folder import ContentFolder
from hither.outside.documents import pack_job, unpack_job
from hither.outside.jobdir import read_job_outputs
from hither.outside.path import prepare
from hither.testing.container_conformance import ParkedHandler

class Mode(enum.IntEnum):
    SLOW = 1
    FAST = 2

SCALE = 2
WEIGHTS = np.zeros(3)
MODE = Mode.SLOW
NAMES = {"a": [1, (2, "x")]}
BOX = types.SimpleNamespace(v="file")

def helper(x):
    return x + OFFSET  # OFFSET is assigned only in the main block

@hi.function('scaled', '0.1.0')
def scaled(x):
    return [helper(x) * SCALE, float(WEIGHTS.sum()), WEIGHTS.shape[0], MODE.name,
            NAMES["a"][1][1], BOX.v]

def run_dir(d):
    subprocess.run([sys.executable, "-m", "hither.runtime", d], check=True)
    out = read_job_outputs(d, 0)
    if out.error is not None:
        raise out.error
    return out.value

if __name__ == '__main__':
    SCALE = 3
    OFFSET = 1
    WEIGHTS = np.arange(5.0)
    MODE = Mode.FAST
    NAMES = {"a": [1, (2, "y")]}
    BOX = types.SimpleNamespace(v="main")  # not plain data: the job sees the file's
    with hi.Config(job_handler=ParkedHandler()):
        job = scaled.run(x=10)
    got = [run_dir(prepare(job, "dirs"))]
    SCALE = 4  # after hand-off: the next job dir has it
    packed = pack_job(prepare(job, "dirs"), ContentFolder("store"), inline_max_bytes=0)
    unpack_job(json.loads(json.dumps(packed)), "other", ContentFolder("store"))
    got.append(run_dir("other"))
    job.cancel()
    print(json.dumps(got))
"""


def _run(tmp_path, body, **env_extra):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    (tmp_path / "dirs").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env_extra)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=env)


def test_a_script_function_runs_with_its_callers_globals_on_the_outside_path(tmp_path):
    proc = _run(tmp_path, _SCRIPT)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == [[33, 10.0, 5, "FAST", "y", "file"], [44, 10.0, 5, "FAST", "y", "file"]]


def test_a_script_global_over_the_limit_is_left_to_the_file_with_a_warning(tmp_path):
    """A big global is not copied into every job directory: the job sees the file's value
    (a script whose big array never changes keeps working), and one warning names it."""
    proc = _run(tmp_path, _SCRIPT, HITHER_SCRIPT_GLOBAL_MAX_BYTES="39")  # WEIGHTS: 40 bytes
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == [[33, 0.0, 3, "FAST", "y", "file"], [44, 0.0, 3, "FAST", "y", "file"]]
    assert proc.stderr.count("'WEIGHTS'") == 1 and "HITHER_SCRIPT_GLOBAL_MAX_BYTES" in proc.stderr
