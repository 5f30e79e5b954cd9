"""A MongoDB outage of a few seconds while a job runs (the server of this test is stopped
and started again on the same storage): the resource and the client both carry on and the
client gets the result. Uses a SecantusDB server of this test's own."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

import hither as hi
from hither.testing.processes import wait_for_pids
from hither.testing.services import PrivateMongo, private_mongo_server

import remote_funcs as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[PrivateMongo]:
    yield from private_mongo_server(tmp_path / "secantus")


@pytest.mark.slow
def test_a_short_mongodb_outage_is_ridden_out(private_mongo, serve, store, tmp_path, monkeypatch):
    db = hi.Database(mongo_url=f"mongodb://127.0.0.1:{private_mongo.port}", database="outage")
    server = serve("resource", database=db)
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    pid_file = str(tmp_path / "pids")
    try:
        with hi.Config(job_handler=jh):
            j = rf.rt_sleep_pid.run(t=1.5, pid_file=pid_file, x=11)
            wait_for_pids(pid_file)
            private_mongo.stop()          # the job ends while the bus is down
            time.sleep(3)
            private_mongo.start()
            assert j.wait(60) == 11
            assert rf.rt_add.run(x=1, y=1).wait(60) == 2   # both sides go on
        assert len(open(pid_file).read().split()) == 1, "the job ran twice"
        assert server.proc.poll() is None
    finally:
        jh.shutdown()


@pytest.mark.slow
def test_a_job_submitted_while_the_bus_is_down_is_retried(private_mongo, serve, store, tmp_path, monkeypatch):
    """Issue 21: a bus outage at submit is not the job's fault: the submit fails with
    BusUnavailableError (an infrastructure failure) and hi.Retry submits it again."""
    from functools import partial

    from hither.errors import is_infrastructure_failure
    from hither_remote.handler import BusUnavailableError

    db = hi.Database(mongo_url=f"mongodb://127.0.0.1:{private_mongo.port}", database="outage")
    serve("resource", database=db)
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    # one try per submit (of 5 s server selection), so the outage outlasts it
    monkeypatch.setattr(jh, "_submit_with_retry", partial(jh._submit_with_retry, attempts=1))
    try:
        with hi.Config(job_handler=jh, retry=hi.Retry(attempts=2, backoff=2.0)):
            assert rf.rt_add.run(x=1, y=1).wait(60) == 2
            private_mongo.stop()
            j = rf.rt_add.run(x=2, y=3)
            deadline = time.monotonic() + 60
            while j.get_runtime_info().attempts < 2:
                assert time.monotonic() < deadline and not j.is_done(), j.get_error()
                time.sleep(0.05)
            private_mongo.start()
            assert j.wait(60) == 5
        assert "BusUnavailableError" in j.get_runtime_info().attempt_errors[0]
        assert is_infrastructure_failure(BusUnavailableError("x"))
    finally:
        jh.shutdown()
