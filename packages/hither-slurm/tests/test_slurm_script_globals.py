"""A script's (``__main__``) function run by a SlurmJobHandler on a real Slurm runs with its
globals' values in the caller (issue 19): the pilot's runner loads the script's definitions
only, so without the globals the job directory carries it saw the file's values."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def test_a_script_function_runs_with_its_callers_globals_on_slurm(slurm, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import numpy as np
        import hither as hi
        SCALE = 2
        WEIGHTS = np.zeros(2)
        def helper(x):
            return x + OFFSET
        @hi.function('scaled_slurm', '0.1.0')
        def scaled_slurm(x):
            return [helper(x) * SCALE, float(WEIGHTS.sum())]
        if __name__ == '__main__':
            SCALE = 3
            OFFSET = 0
            WEIGHTS = np.arange(4.0)
            jh = hi.SlurmJobHandler(working_dir={str(tmp_path / 'work')!r}, use_slurm=True,
                                    num_workers_per_batch=1, num_cores_per_job=1, idle_timeout=5)
            try:
                with hi.Config(job_handler=jh):
                    print(json.dumps(scaled_slurm.run(x=10).wait()))
            finally:
                jh.shutdown(wait=True)
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=200, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [30, 6.0]
