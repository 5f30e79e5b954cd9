"""The remote threat model (docs/reliability.md), each row against real ``hither-remote serve``
processes and the real MongoDB-protocol bus: someone with write access to the bus but
without the secret changes no result, makes no job run twice, and stops no other job;
a job never sees the secret."""
from __future__ import annotations

import time
import uuid

import pytest

import hither as hi
from hither.testing.processes import wait_for_pids

import remote_funcs as rf
from hither_remote.bus import Bus
from hither_remote.models import BusJob
from hither_remote.signing import load_secret, sign

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bus(db):  # noqa: ANN001, ANN201
    """The attacker's view of the test's bus (write access, no secret); closed after."""
    view = Bus(db)
    yield view
    view.close()


def _wait_status(bus: Bus, job_id: str, statuses, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = bus.jobs.find_one({"_id": job_id})
        if doc is not None and doc.get("status") in statuses:
            return doc
        assert time.monotonic() < deadline, f"job {job_id} still {doc and doc.get('status')}"
        time.sleep(0.05)


def test_a_relabelled_job_hash_changes_no_result(serve, db, store, tmp_path):
    """Wrong result: a client with a job cache follows only a job whose signature covers the
    hash it looks for (relabelling another job's hash made it report 3000 for 11 + 22)."""
    pytest.importorskip("hither_cache", reason="a client following a finished job needs a job cache")
    serve()
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh):
            assert rf.rt_add.run(x=1000, y=2000).wait(60) == 3000
            assert rf.rt_add.run(x=11, y=22).wait(60) == 33
    finally:
        jh.shutdown()
    bus = Bus(db)
    try:
        big, small = sorted(bus.jobs.find({}), key=lambda d: d["created"])
        # the attacker (bus write access, no secret) relabels the 3000 job as 11 + 22's
        bus.jobs.delete_one({"_id": small["_id"]})
        bus.jobs.update_one({"_id": big["_id"]}, {"$set": {"job_hash": small["job_hash"]}})
    finally:
        bus.close()
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh, job_cache=hi.JobCache(path=str(tmp_path / "fresh-jc"))):
            assert rf.rt_add.run(x=11, y=22).wait(60) == 33
    finally:
        jh.shutdown()


def test_a_document_copied_to_another_database_or_without_one_is_refused(serve, db, other_db, store, tmp_path):
    """The bus database's name is signed: a job signed for one database is refused on another
    with the same secret, and an old document (no signed database) is refused saying so."""
    server = serve(database=other_db)
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)  # nobody serves db
    marker = tmp_path / "ran"
    bus, other = Bus(db), Bus(other_db)
    try:
        with hi.Config(job_handler=jh):
            rf.rt_sleep_pid.run(t=0, pid_file=str(marker), x=1)
            deadline = time.monotonic() + 30
            while (doc := bus.jobs.find_one({})) is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        other.jobs.insert_one(doc)
        refused = _wait_status(other, doc["_id"], ("refused", "finished", "error"))
        assert refused["status"] == "refused" and "copied" in refused["outcome"]["message"]
        old = dict(doc, _id=uuid.uuid4().hex)
        old.pop("database")
        old_signed = [k for k in BusJob.SIGNED if k != "database"]
        old["signature"] = sign({k: old["_id" if k == "id" else k] for k in old_signed}, load_secret())
        other.jobs.insert_one(old)
        refused = _wait_status(other, old["_id"], ("refused", "finished", "error"))
        assert refused["status"] == "refused" and "older" in refused["outcome"]["message"]
        assert not marker.exists(), "a copied job ran"
        assert server.proc.poll() is None
    finally:
        jh.shutdown()
        bus.close()
        other.close()


def test_a_job_never_sees_the_secret(serve, db, store, tmp_path):
    """Secret exposed: a job returning its environment, reading its parent's and the serve
    process's ``/proc/<pid>/environ``, their command lines, or the resource's config file
    finds no secret, nor the name of the secret file (jobs inherited $HITHER_REMOTE_SECRET)."""
    secret = load_secret().key().decode()
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    config = tmp_path / "serve.toml"
    config.write_text(f'secret-file = "{secret_file}"\nlog-level = "INFO"\n')
    other = "extra-copy-" + uuid.uuid4().hex
    server = serve(env={"HITHER_REMOTE_CONFIG": str(config), "MY_TOOL_TOKEN": secret + "-" + other})
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    pid = server.proc.pid
    try:
        with hi.Config(job_handler=jh):
            seen = rf.rt_peek.run(paths=[f"/proc/{pid}/environ", f"/proc/{pid}/cmdline", str(config)]).wait(60)
    finally:
        jh.shutdown()
    assert "log-level" in seen[str(config)], "the job could not read the config file at all"
    assert "HITHER_REMOTE_SECRET" not in seen["environ"] and "MY_TOOL_TOKEN" not in seen["environ"]
    for what, text in seen.items():
        assert secret not in text and other not in text, f"the secret is visible to a job in {what}"
        assert str(secret_file) not in text or what == str(config), f"the secret file's name is in {what}"


def test_a_running_job_set_back_to_queued_does_not_run_twice(serve, tmp_path, jh, bus):
    """Runs twice: setting a running job's status back to ``queued`` (no secret needed) made
    a second, concurrent run start; the run record's lease keeps it to one run, and the
    first run's result still reaches the client."""
    serve("a", "--workers", "2")
    serve("b", "--workers", "2")
    pid_file = tmp_path / "pids"
    with hi.Config(job_handler=jh):
        job = rf.rt_sleep_pid.run(t=4, pid_file=str(pid_file), x=7)
        wait_for_pids(str(pid_file))  # the job started
        [doc] = bus.jobs.find({})
        for _ in range(3):  # the attacker, several times while it runs
            bus.jobs.update_one({"_id": doc["_id"]}, {"$set": {"status": "queued", "lease_owner": None,
                                                                "lease_expires": None}})
            time.sleep(0.7)
        assert job.wait(60) == 7
    assert len(pid_file.read_text().split()) == 1, "the job ran twice"


def _wait_for_docs(bus: Bus, n: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while len(docs := sorted(bus.jobs.find({}), key=lambda d: d["created"])) < n:
        assert time.monotonic() < deadline, f"{len(docs)} of {n} jobs on the bus"
        time.sleep(0.05)
    return docs


def test_a_malformed_document_in_a_claim_batch_stops_no_other_job(serve, jh, bus):
    """Hang: a document that is no ``BusJob`` made the whole claim batch fail after it was
    marked running, for ever; it is refused with the reason, the others run."""
    from hither_remote.handler import RemoteJobError

    with hi.Config(job_handler=jh):
        jobs = [rf.rt_add.run(x=i, y=1) for i in range(3)]
        _wait_for_docs(bus, 3)
        # the attacker's document, in the batch the resource claims first
        bus.jobs.insert_one({"_id": "malformed-1", "resource_id": "resource1", "status": "queued",
                             "created": 0.0, "document": "not a job"})
        # and one of the client's own jobs made malformed
        victim = rf.rt_add.run(x=100, y=1)
        [vdoc] = [d for d in _wait_for_docs(bus, 5) if d["_id"] not in ("malformed-1",)
                  and d["document"]["args"].get("x") == 100]
        bus.jobs.update_one({"_id": vdoc["_id"]}, {"$set": {"expires": "soon"}})
        serve("r", "--workers", "4")
        assert [j.wait(20) for j in jobs] == [1, 2, 3]
        with pytest.raises(RemoteJobError, match="malformed"):
            victim.wait(20)
    bad = _wait_status(bus, "malformed-1", ("refused",))
    assert "malformed" in bad["outcome"]["message"]


def test_a_malformed_final_document_stops_no_other_job_of_the_client(serve, jh, bus):
    """Hang on the client: one malformed document among its pending jobs made every read of
    the ended jobs fail; that job now fails saying why, the others complete."""
    from hither_remote.handler import RemoteJobError

    with hi.Config(job_handler=jh):
        victim = rf.rt_add.run(x=100, y=1)
        [vdoc] = _wait_for_docs(bus, 1)
        bus.jobs.update_one({"_id": vdoc["_id"]}, {"$set": {"status": "finished", "created": "garbage"}})
        serve("r", "--workers", "2")
        assert rf.rt_add.run(x=1, y=2).wait(20) == 3
        with pytest.raises(RemoteJobError, match="malformed"):
            victim.wait(20)


def test_a_job_nobody_serves_is_queued_warned_of_and_expires(serve, db, store, tmp_path, caplog):
    """Status: a job for a resource id nobody serves reported RUNNING, its timeout said
    "still running", and it waited past its expiry; it is QUEUED, the client warns that no
    live resource of that id was seen, and at its expiry it fails. A served job turns RUNNING."""
    import logging

    from hither_remote.handler import RemoteJobError

    serve()  # resource1 is alive; the jobs below go to "nobody"
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="nobody", store=store,
                             warn_no_resource_after=1.0, expires_in=4.0)
    served = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    pid_file = tmp_path / "pids"
    try:
        with caplog.at_level(logging.WARNING, logger="hither_remote.handler"):
            with hi.Config(job_handler=jh):
                job = rf.rt_add.run(x=1, y=2)
                with pytest.raises(TimeoutError, match="still queued"):
                    job.wait(2.5)
                assert job.get_status() == hi.JobStatus.QUEUED
                assert "no serving process of it was seen" in caplog.text
                with pytest.raises(RemoteJobError, match="expired"):
                    job.wait(20)
        with hi.Config(job_handler=served):
            running = rf.rt_sleep_pid.run(t=3, pid_file=str(pid_file), x=2)
            deadline = time.monotonic() + 30
            while running.get_status() != hi.JobStatus.RUNNING:
                assert time.monotonic() < deadline, f"still {running.get_status()}"
                time.sleep(0.05)
            assert running.wait(30) == 2
        assert "resource1" not in caplog.text, "a warning for a live resource"
    finally:
        jh.shutdown()
        served.shutdown()


def test_a_serve_claims_ahead_only_what_starts_soon(serve, tmp_path, jh, bus):
    """Load: one serve claimed ahead up to 4x its workers and sat on them while a second
    serve of the same id idled; now it claims ahead at most one job per worker, and the
    second serve gets the rest."""
    a = serve("a", "--workers", "1")
    pid_file = tmp_path / "pids"
    with hi.Config(job_handler=jh):
        # 3 s a job: a second serve started under load (8-9 on 2 cores) took longer than
        # the 6 s that 1.5 s jobs left it, and ran none
        jobs = [rf.rt_sleep_pid.run(t=3, pid_file=str(pid_file), x=i) for i in range(6)]
        wait_for_pids(str(pid_file))  # the first job started
        b = serve("b", "--workers", "1")
        assert [j.wait(60) for j in jobs] == list(range(6))
    owners = [d["lease_owner"].split(":")[1] for d in bus.jobs.find({})]
    ran_on_b = owners.count(str(b.proc.pid))
    assert ran_on_b >= 2, f"b ran {ran_on_b} of 6 (a {owners.count(str(a.proc.pid))})"


def test_serve_applies_the_retention_and_prune_does_once(serve, db, tmp_path, jh, bus):
    """Growth: ended jobs, run records, heartbeats of killed processes and logs stayed for
    ever (``status`` showed a killed resource as "not responding ... running 8/2"); serve
    applies the retention, and ``hither-remote prune`` applies it once. Run records of
    unexpired jobs stay (they refuse replays)."""
    import subprocess
    import sys

    from conftest import process_env

    now = time.time()
    dead = {"_id": "resource1/dead:1:x", "resource_id": "resource1", "owner": "dead:1:x", "started": now - 9000,
            "last_seen": now - 7200, "running": 8, "capacity": 2, "stopped": False}
    bus.resources.insert_one(dead)
    bus.runs.insert_one({"_id": "expired-run", "done": True, "expires": now - 10})
    server = serve("r", "--keep-for", "3s", "--keep-jobs", "1", "--dead-after", "30m", "--prune-every", "1s")
    with hi.Config(job_handler=jh):
        assert [rf.rt_talk.run(text="x" * i).wait(60) for i in range(3)] == [0, 1, 2]
    deadline = time.monotonic() + 30
    while bus.jobs.count_documents({}) or bus.resources.find_one({"_id": dead["_id"]}) \
            or bus.runs.find_one({"_id": "expired-run"}):
        assert time.monotonic() < deadline, "the retention was not applied"
        time.sleep(0.2)
    assert bus.runs.count_documents({}) == 3, "the run records of unexpired jobs must stay"
    assert [h.owner for h in bus.resource_records()] == [server.log().split("owner ")[1].split(",")[0]]
    bus.resources.insert_one(dict(dead, _id="other/dead", resource_id="other"))
    env = process_env(tmp_path / "cli", "memory://x", {})
    out = subprocess.run([sys.executable, "-m", "hither_remote.cli", "prune", "--mongo-url", db.mongo_url,
                          "--database", db.database], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "1 resources" in out.stdout, out.stdout + out.stderr
    assert bus.resources.find_one({"_id": "other/dead"}) is None


def _held_by(bus: Bus, owner_pid: int, n: int, timeout: float = 30.0) -> None:
    """Wait until the serve of ``owner_pid`` holds ``n`` jobs (claimed: running on the bus)."""
    deadline = time.monotonic() + timeout
    while sum(1 for d in bus.jobs.find({"status": "running"}, {"lease_owner": 1})
              if (d.get("lease_owner") or "").split(":")[1:2] == [str(owner_pid)]) < n:
        assert time.monotonic() < deadline, f"the serve did not claim {n} jobs"
        time.sleep(0.05)


def test_a_serve_hands_its_waiting_jobs_to_an_idle_peer(serve, tmp_path, jh, bus):
    """Load: a serve holding a claimed job it cannot start (its one worker busy) kept it
    while a second serve of the same id idled, until its running job ended; now it hands
    it back and the idle peer starts it within seconds."""
    a = serve("a", "--workers", "1")
    pid_file = tmp_path / "pids"
    with hi.Config(job_handler=jh):
        [rf.rt_sleep_pid.run(t=40, pid_file=str(pid_file), x=i) for i in range(2)]
        _held_by(bus, a.proc.pid, 2)  # one running, one claimed ahead
        b = serve("b", "--workers", "1")
        t0 = time.monotonic()
        while not pid_file.exists() or len(pid_file.read_text().split()) < 2:
            took = time.monotonic() - t0
            assert took < 20, f"the idle peer did not start the waiting job within {took:.1f} s"
            time.sleep(0.1)
    assert bus.jobs.find_one({"lease_owner": {"$regex": f":{b.proc.pid}:"}}), "the waiting job did not go to b"
    assert "handed rt_sleep_pid" in a.log()


def test_a_killed_serve_delays_its_waiting_jobs_by_a_short_lease(serve, tmp_path, jh, bus):
    """Load: killing a serve delayed the jobs it had claimed but not started by a full
    lease (30 s); they now hold a short lease until they start (a third of it here, 10 s).
    The claim time on the bus counts (not the job's run: a cold job server under load)."""
    import signal

    a = serve("a", "--workers", "1", "--lease-seconds", "30")
    pid_file = tmp_path / "pids"
    with hi.Config(job_handler=jh):
        [rf.rt_sleep_pid.run(t=120, pid_file=str(pid_file), x=i) for i in range(2)]
        _held_by(bus, a.proc.pid, 2)
        deadline = time.monotonic() + 30  # the started job's lease renewed to the full 30 s
        while not bus.jobs.find_one({"lease_expires": {"$gt": time.time() + 15}}):
            assert time.monotonic() < deadline, "the started job's lease was not renewed in full"
            time.sleep(0.1)
        a.stop(signal.SIGKILL)
        killed = time.time()
        b = serve("b", "--workers", "1", "--lease-seconds", "30")
        deadline = time.monotonic() + 60
        while not (doc := bus.jobs.find_one({"lease_owner": {"$regex": f":{b.proc.pid}:"}})):
            assert time.monotonic() < deadline, "b claimed no job"
            time.sleep(0.1)
    assert doc["attempts"] == 2 and doc["started"] - killed < 22, \
        f"a job of the killed serve was claimed again after {doc['started'] - killed:.1f} s (lease 30 s)"


def test_serve_makes_itself_undumpable():
    """Secret exposed: a job of the serve's user (not root) could read the serve process's
    memory; ``serve`` marks itself not dumpable (prctl), which closes /proc/<pid>/mem,
    environ and root to other processes of its user."""
    import subprocess
    import sys

    code = ("import ctypes; get = lambda: ctypes.CDLL(None).prctl(3, 0, 0, 0, 0); before = get(); "
            "from hither_remote.hiding import undumpable; ok = undumpable(); print(before, ok, get())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "True", "0"], out.stdout + out.stderr
    import inspect

    from hither_remote import cli
    assert "undumpable()" in inspect.getsource(cli.serve.callback)
