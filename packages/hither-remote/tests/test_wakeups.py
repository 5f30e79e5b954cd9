"""Wake-ups instead of polling, and the polling fallback, on the real MongoDB-protocol server:
with change streams a job goes round in far less than a poll could take; with them turned
off (as on a standalone mongod, which has none) both sides poll and still run, cancel and
report jobs; batched claims from several claimers at once never take a job twice."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import hither as hi
from hither.errors import JobCancelledException

import remote_funcs as rf
from hither_remote import handler as handler_mod
from hither_remote import resource as resource_mod
from conftest import bus_job
from hither_remote.bus import Bus
from hither_remote.models import BusStatus
from hither_remote.wakeups import ChangeWatcher

pytestmark = pytest.mark.timeout(120)


def _serve(db, store, tmp_path, **kw):
    cr = hi.ComputeResource(database=db, compute_resource_id="resource1", store=store,
                            work_dir=str(tmp_path / "resource-jobs"), workers=2, **kw)
    t = threading.Thread(target=cr.run, daemon=True)
    t.start()
    return cr, t


def _pid_file_pid(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = open(path).read().split()
            if text:
                return int(text[0])
        except FileNotFoundError:
            pass
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)


def test_change_streams_wake_both_sides(db, store, tmp_path, monkeypatch):
    # polls so slow that only a wake-up can bring a job round within the test's limits
    monkeypatch.setattr(resource_mod, "SAFETY_POLL", 60.0)
    monkeypatch.setattr(handler_mod, "SAFETY_POLL", 60.0)
    cr, t = _serve(db, store, tmp_path, poll_interval=60.0)
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store, poll_interval=60.0)
    try:
        assert jh._watcher is not None and jh._watcher.watching
        with hi.Config(job_handler=jh):
            assert rf.rt_add.run(x=1, y=2).wait(30) == 3  # the first one: code bundle, job server
            for i in range(3):
                t0 = time.monotonic()
                assert rf.rt_add.run(x=i, y=10).wait(30) == i + 10
                assert time.monotonic() - t0 < 10, "a job waited for a poll"
            pid_file = str(tmp_path / "pids")
            j = rf.rt_sleep_pid.run(t=300, pid_file=pid_file)
            _pid_file_pid(pid_file)
            t0 = time.monotonic()
            j.cancel()
            with pytest.raises(JobCancelledException):
                j.wait(5)
            # the resource saw the request (no poll for 60 s) and ended the job
            while jh.bus.jobs.find_one({"function_name": "rt_sleep_pid"})["status"] != BusStatus.CANCELLED.value:
                assert time.monotonic() - t0 < 3.0, "the cancel request did not reach the resource"
                time.sleep(0.02)
    finally:
        jh.shutdown()
        cr.stop()
        t.join(30)
    assert not t.is_alive()


@pytest.mark.slow
def test_polling_fallback_runs_cancels_and_reports(db, store, tmp_path):
    cr, t = _serve(db, store, tmp_path, change_streams=False)
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store, change_streams=False)
    try:
        assert jh._watcher is None
        with hi.Config(job_handler=jh):
            jobs = [rf.rt_add.run(x=i, y=1) for i in range(6)]
            assert [j.wait(60) for j in jobs] == [i + 1 for i in range(6)]
            pid_file = str(tmp_path / "pids")
            j = rf.rt_sleep_pid.run(t=300, pid_file=pid_file)
            pid = _pid_file_pid(pid_file)
            t0 = time.monotonic()
            j.cancel()
            with pytest.raises(JobCancelledException):
                j.wait(5)
            import os

            while True:
                try:
                    os.kill(pid, 0)
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                            break
                except (ProcessLookupError, FileNotFoundError):
                    break
                assert time.monotonic() - t0 < 2.0, "the job still runs 2 s after cancel() (polling)"
                time.sleep(0.02)
    finally:
        jh.shutdown()
        cr.stop()
        t.join(30)


def test_a_server_without_change_streams_makes_the_watcher_poll(db):
    # the real server refuses this stream as a standalone mongod refuses every stream:
    # with an OperationFailure when it is opened
    bus = Bus(db)
    woken = []
    try:
        w = ChangeWatcher(bus.jobs, [{"$noSuchStage": {}}], on_change=woken.append,
                          on_gap=lambda: woken.append("gap"), name="test").start()
        assert not w.supported and not w.watching
        w.stop()
        ok = ChangeWatcher(bus.jobs, [{"$match": {"operationType": "insert"}}], on_change=woken.append,
                           on_gap=lambda: None, name="test").start()
        try:
            assert ok.supported and ok.watching
            bus.jobs.insert_one({"_id": "x1"})
            deadline = time.monotonic() + 10
            while not any(isinstance(c, dict) and c["documentKey"]["_id"] == "x1" for c in woken):
                assert time.monotonic() < deadline, "no change event arrived"
                time.sleep(0.01)
        finally:
            ok.stop()
    finally:
        bus.close()


@pytest.mark.timeout(60)
def test_a_watcher_woken_by_other_writes_pauses_and_still_gets_its_own_event(db):
    # A resource's pipeline: jobs inserted for it. The server answers a waiting read at every
    # write, matching or not; after such an empty answer the watcher pauses, so a burst of
    # another resource's jobs costs it far fewer reads than writes, and its own job (inserted
    # right after the burst) still arrives, once.
    import pymongo
    from pymongo import monitoring

    class GetMores(monitoring.CommandListener):
        n = 0

        def started(self, event):
            if event.command_name == "getMore":
                GetMores.n += 1

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    watch_client = pymongo.MongoClient(db.mongo_url, event_listeners=[GetMores()])
    writer = pymongo.MongoClient(db.mongo_url)
    events = []
    coll = watch_client[db.database]["jobs"]
    w = ChangeWatcher(coll, [{"$match": {"operationType": "insert", "fullDocument.resource_id": "mine"}}],
                      on_change=events.append, on_gap=lambda: None, name="mine").start()
    try:
        assert w.watching
        time.sleep(0.3)
        before, writes = GetMores.n, 150
        other = writer[db.database]["jobs"]
        for i in range(writes):
            other.insert_one({"_id": f"other-{i}", "resource_id": "other"})
            time.sleep(0.002)
        writer[db.database]["jobs"].insert_one({"_id": "mine-1", "resource_id": "mine"})
        deadline = time.monotonic() + 10
        while not events:
            assert time.monotonic() < deadline, "the watcher's own event never arrived"
            time.sleep(0.01)
        reads = GetMores.n - before
        time.sleep(0.3)
        assert [e["documentKey"]["_id"] for e in events] == ["mine-1"]
        assert reads < writes * 0.6, f"{reads} reads of the stream for {writes} other writes: no pause"
    finally:
        w.stop()
        watch_client.close()
        writer.close()


class _GetMores:
    """A pymongo command listener counting the change-stream reads (``getMore``) of its client."""

    def __init__(self) -> None:
        from pymongo import monitoring

        counter = self
        self.n = 0

        class Listener(monitoring.CommandListener):
            def started(self, event):
                if event.command_name == "getMore":
                    counter.n += 1

            def succeeded(self, event):
                pass

            def failed(self, event):
                pass

        self.listener = Listener()


def _events_of_a_burst(db, gather, writes=80):
    """The reads of the stream a watcher made while ``writes`` matching inserts came ~2 ms
    apart, and the ids of the events it got."""
    import pymongo

    reads = _GetMores()
    watch_client = pymongo.MongoClient(db.mongo_url, event_listeners=[reads.listener])
    writer = pymongo.MongoClient(db.mongo_url)
    events = []
    coll = watch_client[db.database]["burst"]
    w = ChangeWatcher(coll, [{"$match": {"operationType": "insert"}}], on_change=events.append,
                      on_gap=lambda: None, name="burst", gather=gather).start()
    try:
        assert w.watching
        time.sleep(0.3)
        before = reads.n
        target = writer[db.database]["burst"]
        tag = uuid.uuid4().hex[:6]
        for i in range(writes):
            target.insert_one({"_id": f"{tag}-{i:03d}"})
            time.sleep(0.002)
        deadline = time.monotonic() + 10
        while len(events) < writes:
            assert time.monotonic() < deadline, f"{len(events)} of {writes} events arrived"
            time.sleep(0.01)
        time.sleep(0.2)
        return reads.n - before, [e["documentKey"]["_id"] for e in events]
    finally:
        w.stop()
        watch_client.close()
        writer.close()


@pytest.mark.timeout(90)
def test_a_gathering_watcher_reads_a_burst_of_events_in_fewer_reads(db):
    # The client's watcher while it waits for many jobs: after each batch of events it pauses
    # (wakeups.GATHER) so that one read brings the events of several jobs; every event still
    # arrives, once and in order. Without gathering, each write costs a read.
    writes = 80
    plain_reads, plain = _events_of_a_burst(db, None, writes)
    gathered_reads, gathered = _events_of_a_burst(db, lambda: True, writes)
    assert plain == sorted(plain) and gathered == sorted(gathered) and len(set(gathered)) == writes
    # quiet: 80 plain reads, 14 gathered; under load (other sessions' writes to the shared
    # server wake the stream too, the writer is slower) 33 gathered were seen
    assert gathered_reads < writes * 0.6, f"{gathered_reads} reads for {writes} events: no gathering"
    assert gathered_reads < plain_reads * 0.6, (gathered_reads, plain_reads)


def test_batched_claims_from_many_claimers_take_each_job_once(db):
    setup = Bus(db)
    setup.ensure_indexes()
    jobs = [bus_job(i) for i in range(60)]
    setup.submit_many(jobs)
    setup.jobs.insert_one(dict(bus_job(99).to_mongo(), resource_id="another"))  # never ours
    got = {}
    lock = threading.Lock()

    def claimer(k: int) -> None:
        bus = Bus(db)
        try:
            while True:
                if k % 2:  # by id, as after change events: the same ids as the others race for
                    claimed = bus.claim_ids("resource1", [j.id for j in jobs[:40]], f"owner{k}", 30)
                    claimed += bus.claim_many("resource1", f"owner{k}", 30, 3)
                else:
                    claimed = bus.claim_many("resource1", f"owner{k}", 30, 4)
                if not claimed:
                    return
                with lock:
                    for j in claimed:
                        assert j.id not in got, f"{j.id} claimed by {got[j.id]} and owner{k}"
                        got[j.id] = f"owner{k}"
                        assert j.lease_owner == f"owner{k}" and j.status == BusStatus.RUNNING
        finally:
            bus.close()

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == sorted(j.id for j in jobs)
    docs = list(setup.jobs.find({"resource_id": "resource1"}, {"attempts": 1, "lease_owner": 1}))
    assert all(d["attempts"] == 1 and got[d["_id"]] == d["lease_owner"] for d in docs)
    assert setup.jobs.find_one({"resource_id": "another"})["status"] == BusStatus.QUEUED.value
    # an expired lease is taken again, once
    setup.jobs.update_one({"_id": jobs[0].id}, {"$set": {"lease_expires": time.time() - 1}})
    again = setup.claim_many("resource1", "late", 30, 5)
    assert [j.id for j in again] == [jobs[0].id] and again[0].attempts == 2
    setup.close()


def test_capacity_comes_from_workers_then_launcher_then_handler(db, store):
    from hither.outside.jobserver import JobServerLauncher

    par = hi.ParallelJobHandler(3)
    try:
        cases = [(None, None, 1), (None, hi.DefaultJobHandler(), 1), (None, par, 3), (2, par, 2), (4, None, 4)]
        for workers, handler, want in cases:
            cr = hi.ComputeResource(database=db, compute_resource_id="resource1", store=store,
                                    job_handler=handler, workers=workers)
            assert cr.capacity == want, (workers, handler)
            host = cr._launcher.host  # the non-container jobs' launcher
            assert isinstance(host, JobServerLauncher) and host.server is None  # lazy
            cr._launcher.close()
            cr.bus.close()
    finally:
        par.shutdown()
