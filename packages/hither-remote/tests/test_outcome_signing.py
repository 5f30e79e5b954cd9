"""Signed outcomes: the resource signs each outcome it writes (for its job id and status);
the client refuses an unsigned, forged, altered or copied outcome with a clear error on
that job, at once (never a hang). Tampering is done directly in MongoDB, against a real
``hither-remote serve`` process. Seal/verify round-trips through BSON (hypothesis)."""
from __future__ import annotations

import time

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hither as hi

import remote_funcs as rf
from hither_remote.handler import RemoteJobError
from hither_remote.models import BusJob, BusOutcome, BusStatus
from hither_remote.signing import Secret, load_secret, outcome_problem, seal_outcome

pytestmark = pytest.mark.timeout(90)

json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=12) \
    | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8).filter(lambda k: "\x00" not in k),
                                             inner, max_size=4), max_leaves=15)


def _bus_job(job_id: str, status: BusStatus, outcome: BusOutcome) -> BusJob:
    return BusJob(_id=job_id, resource_id="r", function_name="f", document={}, created=0.0, expires=1.0,
                  status=status, outcome=outcome)


@settings(max_examples=100, deadline=None)
@given(value=json_values, code=st.none() | st.integers(0, 255), key=st.binary(min_size=16, max_size=40),
       job_id=st.text(min_size=1, max_size=20))
def test_a_sealed_outcome_verifies_after_bson_and_nothing_else_does(value, code, key, job_id):
    secret = Secret(key)
    sealed = seal_outcome(job_id, "finished", BusOutcome(packed={"result": {"value": value}}, exit_code=code), secret)
    # as written to and read back from MongoDB
    back = BusOutcome.model_validate(bson.decode(bson.encode({"o": sealed.model_dump(mode="json")}))["o"])
    assert outcome_problem(_bus_job(job_id, BusStatus.FINISHED, back), secret) is None
    assert "does not match" in outcome_problem(_bus_job(job_id + "x", BusStatus.FINISHED, back), secret)
    assert "does not match" in outcome_problem(_bus_job(job_id, BusStatus.FINISHED, back), Secret(key + b"!"))
    altered = back.model_copy(update={"packed": {"result": {"value": [value]}}})
    assert "does not match" in outcome_problem(_bus_job(job_id, BusStatus.FINISHED, altered), secret)
    assert "was altered" in outcome_problem(_bus_job(job_id, BusStatus.ERROR, back), secret)
    unsigned = back.model_copy(update={"signature": None})
    assert "not signed" in outcome_problem(_bus_job(job_id, BusStatus.FINISHED, unsigned), secret)


def _queued(jh, resource_id: str, timeout: float = 20.0) -> dict:
    """The job of ``resource_id`` waiting on the bus."""
    deadline = time.monotonic() + timeout
    while True:
        doc = jh.bus.jobs.find_one({"resource_id": resource_id, "status": "queued"})
        if doc is not None:
            return doc
        assert time.monotonic() < deadline, "the job never reached the bus"
        time.sleep(0.05)


def _write_outcome(jh, job_id: str, status: str, outcome: dict) -> None:
    jh.bus.jobs.update_one({"_id": job_id}, {"$set": {"status": status, "outcome": outcome,
                                                       "ended": time.time()}})


def _refused_fast(job, match: str) -> RemoteJobError:
    t0 = time.monotonic()
    with pytest.raises(RemoteJobError, match=match) as ei:
        job.wait(20)
    assert time.monotonic() - t0 < 10, "the client took too long to see the bad outcome"
    return ei.value


def test_outcomes_of_the_resource_are_signed_and_forgeries_are_refused(serve, jh, db, store):
    serve()
    with hi.Config(job_handler=jh):
        assert rf.rt_add.run(x=1, y=2).wait(60) == 3
    [good] = jh.bus.jobs.find({"resource_id": "resource1"})
    assert good["outcome"]["signature"] and good["outcome"]["status"] == "finished"

    # nobody serves "forged": whoever writes an outcome there is not the resource
    forged = hi.RemoteJobHandler(database=db, compute_resource_id="forged", store=store)
    try:
        with hi.Config(job_handler=forged):
            j1 = rf.rt_add.run(x=5, y=5)
            d1 = _queued(forged, "forged")
            _write_outcome(forged, d1["_id"], "finished",
                           {"packed": {"result": {"value": 99}, "runtime": {}}, "status": "finished"})
            err = _refused_fast(j1, "not signed by a compute resource")
            assert "was not used" in str(err) and d1["_id"] in str(err)

            # a valid outcome of another job, copied onto this one, does not verify
            j2 = rf.rt_add.run(x=6, y=6)
            d2 = _queued(forged, "forged")
            _write_outcome(forged, d2["_id"], "finished", good["outcome"])
            _refused_fast(j2, "signature does not match")

            # signed with a secret the client does not share
            j3 = rf.rt_add.run(x=7, y=7)
            d3 = _queued(forged, "forged")
            bad = seal_outcome(d3["_id"], "finished", BusOutcome(packed={"result": {"value": 14}, "runtime": {}}),
                               load_secret("not-the-shared-secret-0123456789"))
            _write_outcome(forged, d3["_id"], "finished", bad.model_dump(mode="json"))
            _refused_fast(j3, "do not share the same")
    finally:
        forged.shutdown()


hither_cache = pytest.importorskip("hither_cache", reason="a client following a finished job needs a job cache")


@pytest.mark.parametrize("change,match", [
    ("value", "signature does not match"),
    ("status", "not the one the resource signed"),
    ("unsigned", "not signed"),
])
def test_a_finished_outcome_altered_in_mongodb_is_refused(change, match, serve, jh, db, store, tmp_path):
    """A second client (with a job cache of its own, empty) follows the finished job on the
    bus instead of sending it again; the outcome was altered meanwhile: it is refused."""
    serve()
    fn, kwargs = (rf.rt_fail, {"msg": "no"}) if change == "status" else (rf.rt_add, {"x": 20, "y": 1})
    with hi.Config(job_handler=jh):
        first = fn.run(**kwargs)
        first.wait_done(60)
    [doc] = jh.bus.jobs.find({})
    if change == "value":
        assert doc["outcome"]["packed"]["result"]["value"] == 21
        update = {"outcome.packed.result.value": 1000}
    elif change == "status":
        assert doc["status"] == "error"
        update = {"status": "finished"}  # a failure passed off as a result
    else:
        update = {"outcome.signature": None}
    jh.bus.jobs.update_one({"_id": doc["_id"]}, {"$set": update})
    second = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=second, job_cache=hi.JobCache(path=str(tmp_path / "jc2"))):
            _refused_fast(fn.run(**kwargs), match)
    finally:
        second.shutdown()
