"""Signed job documents: unsigned, tampered, wrong-secret, expired and replayed documents
are refused (status ``refused``, never run) and the client sees why; the secret never
appears on the bus, in a log or in an error. Signatures round-trip (hypothesis)."""
from __future__ import annotations

import json
import logging
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hither as hi
from hither.errors import ConfigError

import remote_funcs as rf
from conftest import running
from hither_remote.bus import Bus
from hither_remote.handler import RemoteJobError
from hither_remote.models import BusJob, BusStatus
from hither_remote.signing import Secret, canonical_json, load_secret, sign, verify

pytestmark = pytest.mark.timeout(90)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(json_values, st.binary(min_size=16, max_size=64))
def test_signature_round_trips_through_json_and_catches_changes(value, key):
    secret = Secret(key)
    sig = sign(value, secret)
    back = json.loads(json.dumps(value))          # as stored in and read back from the bus
    assert verify(back, sig, secret)
    assert canonical_json(back) == canonical_json(value)
    assert not verify({"changed": back}, sig, secret)
    assert not verify(back, sig, Secret(key + b"x"))


def test_secret_is_required_and_never_shown(monkeypatch, tmp_path):
    monkeypatch.delenv("HITHER_REMOTE_SECRET", raising=False)
    with pytest.raises(ConfigError, match="HITHER_REMOTE_SECRET"):
        load_secret()
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_secret("short")
    f = tmp_path / "secret"
    f.write_text("from-a-file-0123456789\n")
    s = load_secret(secret_file=str(f))
    assert s.key() == b"from-a-file-0123456789" and "from-a-file" not in repr(s) + str(s)


@pytest.fixture
def resource(db, store, tmp_path):
    with running(hi.ComputeResource(database=db, compute_resource_id="resource1", store=store,
                                    work_dir=str(tmp_path / "resource-jobs"))) as cr:
        yield cr


def _tamper_submit(jh, change):
    """Make the handler's bus insert ``change(doc)`` instead of the signed document."""
    real = jh.bus.submit

    def submit(bus_job):
        real(BusJob.model_validate(change(bus_job.to_mongo())))
    jh.bus.submit = submit


def _refused(job, match):
    with pytest.raises(RemoteJobError, match=match) as ei:
        job.wait(30)
    return ei.value


@pytest.mark.parametrize("case,match", [
    ("unsigned", "not signed"),
    ("tampered", "signature does not match"),
    ("tampered_globals", "signature does not match"),  # a script's globals ride in the spec
    ("expired", "expired"),
])
def test_bad_documents_are_refused(case, match, resource, db, store, tmp_path, caplog):
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    marker = tmp_path / "ran"

    def change(doc):
        if case == "unsigned":
            doc["signature"] = None
        elif case == "tampered":
            doc["document"]["args"]["pid_file"] = str(marker) + "-other"
        elif case == "tampered_globals":
            doc["document"]["spec"]["script_globals"] = {"SCALE": 3}
        elif case == "expired":
            doc["expires"] = time.time() - 10
            doc["signature"] = sign({k: doc["_id" if k == "id" else k] for k in BusJob.SIGNED}, jh._secret)
        return doc
    _tamper_submit(jh, change)
    try:
        with caplog.at_level(logging.DEBUG), hi.Config(job_handler=jh):
            err = _refused(rf.rt_sleep_pid.run(t=0, pid_file=str(marker)), match)
        assert not os.path.exists(str(marker)) and not os.path.exists(str(marker) + "-other"), "it ran"
        assert os.environ["HITHER_REMOTE_SECRET"] not in str(err) + caplog.text
        [doc] = jh.bus.jobs.find({})
        assert doc["status"] == BusStatus.REFUSED.value
        assert os.environ["HITHER_REMOTE_SECRET"] not in json.dumps(doc, default=str)
    finally:
        jh.shutdown()


def test_wrong_secret_is_refused(resource, db, store, tmp_path):
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store,
                             secret="another-secret-of-the-client")
    marker = tmp_path / "ran"
    try:
        with hi.Config(job_handler=jh):
            _refused(rf.rt_sleep_pid.run(t=0, pid_file=str(marker)), "do not share the same")
        assert not marker.exists()
    finally:
        jh.shutdown()


def test_a_replayed_document_is_refused(resource, db, store, tmp_path):
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    marker = tmp_path / "ran"
    try:
        with hi.Config(job_handler=jh):
            assert rf.rt_sleep_pid.run(t=0, pid_file=str(marker), x=5).wait(30) == 5
        assert len(marker.read_text().split()) == 1
        # someone with write access to the bus queues the finished, validly signed job again
        bus = Bus(db)
        [doc] = bus.jobs.find({})
        bus.jobs.update_one({"_id": doc["_id"]}, {"$set": {"status": "queued", "outcome": None,
                                                            "lease_owner": None, "lease_expires": None}})
        deadline = time.monotonic() + 20
        while bus.jobs.find_one({"_id": doc["_id"]})["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = bus.jobs.find_one({"_id": doc["_id"]})
        assert again["status"] == "refused" and "replayed" in again["outcome"]["message"]
        assert len(marker.read_text().split()) == 1, "the replayed job ran"
        bus.close()
    finally:
        jh.shutdown()


@pytest.mark.parametrize("name, value", [
    ("poll_interval", float("nan")), ("poll_interval", 0), ("poll_interval", -1.0), ("poll_interval", True),
    ("expires_in", float("inf")), ("expires_in", "60"), ("inline_max_bytes", -1), ("inline_max_bytes", 1.5),
    ("lease_seconds", float("inf")), ("lease_seconds", float("nan")), ("compute_resource_id", ""),
])
def test_bad_options_fail_at_construction_naming_the_option(db, store, name, value):
    """Both ends check their options alike (``hither_remote.endpoint``), before touching the bus."""
    for cls in (hi.RemoteJobHandler, hi.ComputeResource):
        if name == "expires_in" and cls is hi.ComputeResource or name == "lease_seconds" and cls is hi.RemoteJobHandler:
            continue  # an option of the other end
        kwargs = dict(database=db, compute_resource_id="resource1", store=store)
        kwargs[name] = value
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\({name}=\.\.\.\)"):
            cls(**kwargs)
