"""The compute resource's job cache, with real ``hither-remote serve`` processes: a client
with no job cache of its own (a second one, one restarted after being killed, or any after
the resource itself restarted) gets a result the resource already computed without a rerun
(runs counted by a side-effect file), with arrays and files through the store; the
client's force_run and cache_failing travel with the job and are honoured."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import hither as hi

import remote_funcs as rf
from conftest import process_env, running
from hither_remote.resource_cache import job_cache_from_option

pytestmark = pytest.mark.timeout(150)
pytest.importorskip("hither_cache", reason="a job cache needs hither-cache")


def _runs(count_file) -> int:
    return len(open(count_file).read().split()) if os.path.exists(count_file) else 0


def _check(value, x):
    assert value["x"] == x
    np.testing.assert_array_equal(value["array"], np.full(50_000, float(x)))
    with open(value["file"].resolve()) as f:
        assert f.read() == f"x={x}"


CLIENT = r'''
import os, sys
sys.path.insert(0, sys.argv[1])
import hither as hi
import remote_funcs as rf
db = hi.Database(mongo_url=os.environ["T_MONGO"], database=os.environ["T_DB"])
jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1")  # store: $HITHER_STORE_URL
with hi.Config(job_handler=jh):       # no job cache here
    rf.rt_count.run(count_file=os.environ["T_COUNT"], x=5).wait(300)
    print("got it", flush=True)
    import time; time.sleep(300)       # killed here
'''


def test_a_client_without_a_cache_gets_the_resources_cached_result(serve, db, store, store_url, storage_options,
                                                                   tmp_path):
    cache_dir = str(tmp_path / "resource-cache")
    first = serve("first", "--job-cache", cache_dir)
    count = str(tmp_path / "count")
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = process_env(tmp_path / "client1", store_url, storage_options,
                      T_MONGO=db.mongo_url, T_DB=db.database, T_COUNT=count)
    client = subprocess.Popen([sys.executable, str(script), os.path.dirname(__file__)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "got it"
    finally:
        client.send_signal(signal.SIGKILL)  # the client is gone, and had no cache
        client.wait(10)
    assert _runs(count) == 1

    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh):   # the restarted client, no cache of its own
            again = rf.rt_count.run(count_file=count, x=5)
            _check(again.wait(60), 5)
            assert _runs(count) == 1, "the resource ran the job again"
            ri = again.get_runtime_info()
            assert ri.model_extra.get("from_resource_cache") == "resource1", ri
            assert not ri.cached  # "cached" is about the client's own job cache
            first.wait_log("from this resource's job cache", 10)  # logged just after the outcome is written

            first.stop()                  # the resource restarts: its cache stays
            serve("second", "--job-cache", cache_dir)
            _check(rf.rt_count.run(count_file=count, x=5).wait(60), 5)
            assert _runs(count) == 1

            with hi.Config(force_run=True):   # the client's force_run reaches the resource
                _check(rf.rt_count.run(count_file=count, x=5).wait(60), 5)
            assert _runs(count) == 2
            _check(rf.rt_count.run(count_file=count, x=6).wait(60), 6)   # other arguments: a run
            assert _runs(count) == 3
    finally:
        jh.shutdown()


@pytest.fixture
def resource_caching_failures(db, store, tmp_path):
    """A ComputeResource (in a thread) whose job cache (MongoDB) records failures too."""
    cache_db = hi.Database(mongo_url=db.mongo_url, database=db.database + "_jc")
    with running(hi.ComputeResource(database=db, compute_resource_id="resource1", store=store,
                                    job_cache=hi.JobCache(database=cache_db, cache_failing=True),
                                    work_dir=str(tmp_path / "resource-jobs"))) as cr:
        yield cr
    import pymongo

    pymongo.MongoClient(db.mongo_url).drop_database(cache_db.database)


def test_recorded_failures_answer_only_clients_that_accept_them(resource_caching_failures, db, store, tmp_path):
    count = str(tmp_path / "count")
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh):
            for expected_runs in (1, 1):  # recorded, then the answer (the resource caches failures)
                with pytest.raises(ValueError, match="failed on 7"):
                    rf.rt_count.run(count_file=count, x=7, fail=True).wait(60)
                assert _runs(count) == expected_runs
        # a client whose own job cache does not keep failures wants a fresh run
        with hi.Config(job_handler=jh, job_cache=hi.JobCache(path=str(tmp_path / "client-jc"))):
            with pytest.raises(ValueError, match="failed on 7"):
                rf.rt_count.run(count_file=count, x=7, fail=True).wait(60)
            assert _runs(count) == 2
    finally:
        jh.shutdown()


def test_the_job_cache_option_takes_a_folder_or_a_mongodb_url(tmp_path, mongo_url):
    jc = job_cache_from_option(str(tmp_path / "jc"))
    assert str(tmp_path / "jc") in jc.backend.describe()
    jc = job_cache_from_option(mongo_url.rstrip("/") + "/some_cache_db")
    assert "some_cache_db" in jc.backend.describe() and "mongo" in jc.backend.describe().lower()
