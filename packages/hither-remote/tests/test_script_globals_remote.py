"""A script's (``__main__``) function run on a compute resource (``hither-remote serve``)
runs with its globals' values in the client (issue 19): they travel in the signed job
document's spec, a global array through the store."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import process_env
from hither.testing.scripts import check_script_globals_output, write_script_globals_program

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_a_script_function_runs_with_its_callers_globals_on_a_compute_resource(
        serve, db, store_url, storage_options, tmp_path):
    serve()
    client = tmp_path / "client"
    client.mkdir()
    script = write_script_globals_program(
        client / "script.py", "scaled_remote", config="job_handler=jh, download_results=True",
        wait_args="60", teardown="jh.shutdown()",
        setup=f"db = hi.Database(mongo_url={db.mongo_url!r}, database={db.database!r})\n"
              "jh = hi.RemoteJobHandler(database=db, compute_resource_id='resource1', inline_max_bytes=0)")
    env = process_env(client, store_url, storage_options)
    check_script_globals_output(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                               timeout=100, cwd=str(client), env=env))
