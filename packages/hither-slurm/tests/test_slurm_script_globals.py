"""A script's (``__main__``) function run by a SlurmJobHandler on a real Slurm runs with its
globals' values in the caller (issue 19): the pilot's runner loads the script's definitions
only, so without the globals the job directory carries it saw the file's values."""
import os
import subprocess
import sys

import pytest

from hither.testing.scripts import check_script_globals_output, write_script_globals_program

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_a_script_function_runs_with_its_callers_globals_on_slurm(slurm, tmp_path):
    script = write_script_globals_program(
        tmp_path / "script.py", "scaled_slurm", config="job_handler=jh", teardown="jh.shutdown(wait=True)",
        setup=f"jh = hi.SlurmJobHandler(working_dir={str(tmp_path / 'work')!r}, use_slurm=True, "
              "num_workers_per_batch=1, num_cores_per_job=1, idle_timeout=5)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    check_script_globals_output(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                               timeout=200, cwd=str(tmp_path), env=env))
