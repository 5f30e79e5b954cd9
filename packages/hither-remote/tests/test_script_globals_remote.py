"""A script's (``__main__``) function run on a compute resource (``hither-remote serve``)
runs with its globals' values in the client (issue 19): they travel in the signed job
document's spec, a global array through the store."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import process_env

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_a_script_function_runs_with_its_callers_globals_on_a_compute_resource(
        serve, db, store_url, storage_options, tmp_path):
    serve()
    client = tmp_path / "client"
    client.mkdir()
    script = client / "script.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import numpy as np
        import hither as hi
        SCALE = 2
        WEIGHTS = np.zeros(2)
        def helper(x):
            return x + OFFSET
        @hi.function('scaled_remote', '0.1.0')
        def scaled_remote(x):
            return [helper(x) * SCALE, float(WEIGHTS.sum())]
        if __name__ == '__main__':
            SCALE = 3
            OFFSET = 0
            WEIGHTS = np.arange(4.0)
            db = hi.Database(mongo_url={db.mongo_url!r}, database={db.database!r})
            jh = hi.RemoteJobHandler(database=db, compute_resource_id='resource1', inline_max_bytes=0)
            try:
                with hi.Config(job_handler=jh, download_results=True):
                    print(json.dumps(scaled_remote.run(x=10).wait(60)))
            finally:
                jh.shutdown()
        """))
    env = process_env(client, store_url, storage_options)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=100, cwd=str(client), env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [30, 6.0]
