"""Kill -9 the client while its job runs on the resource, start a client again: with a job
cache configured it follows the job already on the bus (no rerun) and gets its result;
afterwards the result comes from the job cache."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import hither as hi

import remote_funcs as rf
from conftest import process_env

pytestmark = pytest.mark.timeout(120)
# a job cache needs hither-cache (not a dependency of hither-remote: the all-in-one
# environment runs this; the remote-only one skips it)
pytest.importorskip("hither_cache", reason="hither-cache is not installed")

CLIENT = r'''
import os, sys, time
sys.path.insert(0, sys.argv[1])
import hither as hi
import remote_funcs as rf
db = hi.Database(mongo_url=os.environ["T_MONGO"], database=os.environ["T_DB"])
jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1")  # store: $HITHER_STORE_URL
with hi.Config(job_handler=jh, job_cache=hi.JobCache(path=os.environ["T_JC"])):
    j = rf.rt_sleep_pid.run(t=3, pid_file=os.environ["T_PIDS"], x=21)
    j.wait(300)
'''


def test_a_restarted_client_gets_the_result_without_a_rerun(serve, db, store, store_url, storage_options, tmp_path):
    serve()
    pid_file, jc_path = str(tmp_path / "pids"), str(tmp_path / "jc")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = process_env(tmp_path / "client1", store_url, storage_options,
                      T_MONGO=db.mongo_url, T_DB=db.database, T_JC=jc_path, T_PIDS=pid_file)
    client = subprocess.Popen([sys.executable, str(script), os.path.dirname(__file__)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file):
            assert client.poll() is None, "the first client exited"
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(10)

    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh, job_cache=hi.JobCache(path=jc_path)):
            assert rf.rt_sleep_pid.run(t=3, pid_file=pid_file, x=21).wait(60) == 21
            again = rf.rt_sleep_pid.run(t=3, pid_file=pid_file, x=21)
            assert again.wait(60) == 21 and again.get_runtime_info().cached
        assert len(open(pid_file).read().split()) == 1, "the job ran again"
        with hi.Config(job_handler=jh):  # without a job cache: a new run, as always
            assert rf.rt_sleep_pid.run(t=0, pid_file=pid_file, x=21).wait(60) == 21
        assert len(open(pid_file).read().split()) == 2
    finally:
        jh.shutdown()
