"""The resource's coalesced bus writes, against the real MongoDB-protocol server: bulk run
records refuse replays one by one, bulk outcomes honour cancel requests and lost leases,
and ``Coalescer`` gives each caller its own result (or its batch's error)."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from conftest import bus_job
from hither_remote.bus import Bus
from hither_remote.coalesce import Coalescer
from hither_remote.models import BusOutcome, BusStatus


def test_start_runs_in_bulk_refuses_only_the_runs_that_ended(db):
    bus = Bus(db)
    try:
        ids = [f"run-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
        assert bus.start_run(ids[1], "o") and bus.start_run(ids[3], "o")
        bus.end_runs([ids[1], ids[3]])
        assert bus.start_runs(ids, "o") == [True, False, True, False, True]
        # started but not ended (a rerun after a lost lease) may start again
        assert bus.start_runs([ids[0]], "o") == [True]
        assert {d["_id"] for d in bus.runs.find({"done": True})} >= {ids[1], ids[3]}
    finally:
        bus.close()


def test_finish_many_writes_each_outcome_once_and_ends_cancel_requests_cancelled(db):
    bus = Bus(db)
    try:
        jobs = [bus_job(i) for i in range(4)]
        bus.submit_many(jobs)
        claimed = bus.claim_ids("resource1", [j.id for j in jobs], "me", 30)
        assert len(claimed) == 4
        bus.request_cancel(jobs[1].id)  # running: a cancel request
        bus.jobs.update_one({"_id": jobs[2].id}, {"$set": {"lease_owner": "another"}})  # lease lost
        ends = [(j.id, BusStatus.FINISHED, BusOutcome(message=f"m{i}")) for i, j in enumerate(jobs)]
        assert bus.finish_many("me", ends) == [True, True, False, True]
        st = {d["_id"]: d for d in bus.jobs.find({"_id": {"$in": [j.id for j in jobs]}})}
        assert st[jobs[0].id]["status"] == "finished" and st[jobs[0].id]["outcome"]["message"] == "m0"
        assert st[jobs[1].id]["status"] == "cancelled"
        assert st[jobs[2].id]["status"] == "running"
        assert st[jobs[3].id]["status"] == "finished"
        # written already (a retry after a write that got through): still True, unchanged
        assert bus.finish_many("me", [ends[0]]) == [True]
    finally:
        bus.close()


@pytest.mark.timeout(30)
def test_coalescer_batches_concurrent_calls_and_reports_errors_to_their_callers():
    batches = []
    gate = threading.Event()

    def fn(items):
        gate.wait(5)
        batches.append(list(items))
        if "bad" in items:
            raise ValueError("a bad batch")
        return [x * 2 for x in items]

    c = Coalescer(fn, name="test-coalescer")
    results, errors = {}, {}

    def call(x):
        try:
            results[x] = c.call(x)
        except ValueError as exc:
            errors[x] = str(exc)

    first = threading.Thread(target=call, args=("a",))
    first.start()
    time.sleep(0.2)  # "a" is being written: the next ones queue up behind it
    others = [threading.Thread(target=call, args=(x,)) for x in ("b", "c", "d")]
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first] + others:
        t.join(10)
    assert results == {"a": "aa", "b": "bb", "c": "cc", "d": "dd"}
    assert len(batches) == 2 and sorted(batches[1]) == ["b", "c", "d"]
    assert c.call("e") == "ee"
    with pytest.raises(ValueError, match="a bad batch"):
        c.call("bad")
    c.close()
    assert c.call("f") == "ff"  # after close: on the caller's thread
