"""Live logs: a running job's console output reaches the bus while it runs (a real ``serve``
process), ``hither-remote logs JOB_ID`` shows it then, ``--follow`` (a real process of its
own) streams it until the job ends, and the client still gets the whole output at the end.
The shipper caps what one run keeps on the bus and says so; any text written in any
pieces comes back whole (hypothesis, against the real MongoDB-protocol server)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hither as hi

import remote_funcs as rf
from hither_remote.bus import Bus
from hither_remote.cli import main
from hither_remote.logs import CONSOLE_FILE, LogShipper, clear_logs, read_chunks

pytestmark = pytest.mark.timeout(120)


def _args(db):
    return ["--mongo-url", db.mongo_url, "--database", db.database]


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_output_reaches_the_bus_while_the_job_runs_and_follow_streams_it(serve, db, store, tmp_path):
    serve()
    go = str(tmp_path / "go")
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    runner = CliRunner()
    try:
        with hi.Config(job_handler=jh):
            job = rf.rt_chatty.run(go_file=go)
            bus_id = _wait_for(lambda: (jh.bus.jobs.find_one({"status": "running"}) or {}).get("_id"), 60,
                               "the job to start")

            def shown():
                r = runner.invoke(main, ["logs", bus_id, *_args(db)])
                assert r.exit_code == 0, r.output
                return r.output if "first line" in r.output else None
            t0 = time.monotonic()
            out = _wait_for(shown, 10, "the first line on the bus")
            assert "a line on stderr" in out and "second line" not in out
            assert not job.is_done() and jh.bus.jobs.find_one({"_id": bus_id})["status"] == "running"

            env = {**os.environ, "HITHER_REMOTE_MONGO_URL": db.mongo_url, "HITHER_REMOTE_DATABASE": db.database}
            follow = subprocess.Popen([sys.executable, "-m", "hither_remote.cli", "logs", bus_id, "--follow",
                                       "--interval", "0.1"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
            try:
                assert follow.stdout.readline() == "first line\n"   # what was there already
                time.sleep(0.5)
                assert follow.poll() is None, "--follow ended while the job still runs"
                open(go, "w").close()                             # now the job prints again and ends
                rest, err = follow.communicate(timeout=30)
            finally:
                if follow.poll() is None:
                    follow.kill()
                    follow.wait(5)
            assert follow.returncode == 0, err
            assert "second line" in rest and f"{bus_id}: finished" in err
            assert job.wait(30) == 2
            ri = job.get_runtime_info()   # the whole output still comes with the outcome
            assert "first line" in ri.stdout and "second line" in ri.stdout and "a line on stderr" in ri.stderr
            assert time.monotonic() - t0 < 60
        r = runner.invoke(main, ["logs", bus_id, *_args(db)])   # ended: from the outcome
        assert r.exit_code == 0 and "first line\n" in r.output and "second line\n" in r.output, r.output
    finally:
        jh.shutdown()


def test_the_bus_keeps_at_most_max_bytes_per_run_and_says_so(db, tmp_path):
    bus = Bus(db)
    shipper = LogShipper(bus, "resource1", interval=0.05, max_bytes=1000)
    try:
        path = tmp_path / CONSOLE_FILE
        shipper.start("job-a", 1, str(tmp_path))
        with open(path, "w") as f:
            f.write("x" * 600 + "\n")
            f.flush()
            _wait_for(lambda: read_chunks(bus, "job-a"), 10, "the first chunk")
            f.write("y" * 5000 + "\n")
        shipper.finish("job-a")
        chunks = read_chunks(bus, "job-a")
        text = "".join(c.text for c in chunks)
        assert text.startswith("x" * 600 + "\n" + "y" * 399)
        assert "y" * 400 not in text and "passed 1000 bytes" in text
        assert chunks[-1].truncated and not any(c.truncated for c in chunks[:-1])
        assert sum(len(c.text.encode()) for c in chunks) < 1000 + 300
        # job-a is not on the bus (as after ComputeResource.clear()): its chunks go
        assert clear_logs(bus, "resource1") == len(chunks) and read_chunks(bus, "job-a") == []
    finally:
        shipper.close()
        bus.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.text(max_size=40), max_size=8), ship_after=st.lists(st.booleans(), max_size=8))
def test_any_text_in_any_pieces_comes_back_whole(db, pieces, ship_after):
    bus = Bus(db)
    shipper = LogShipper(bus, "resource1", interval=3600)  # ships only when told here
    job_id = "job-" + os.urandom(6).hex()
    with tempfile.TemporaryDirectory() as d:
        try:
            shipper.start(job_id, 1, d)
            with open(os.path.join(d, CONSOLE_FILE), "wb") as f:
                for i, piece in enumerate(pieces):
                    data = piece.encode("utf-8")
                    # a character split across two writes, shipped in between
                    cut = len(data) // 2
                    f.write(data[:cut])
                    f.flush()
                    if i < len(ship_after) and ship_after[i]:
                        shipper._ship(shipper._watched[job_id], final=False)
                    f.write(data[cut:])
                    f.flush()
            shipper.finish(job_id)
            assert "".join(c.text for c in read_chunks(bus, job_id)) == "".join(pieces)
        finally:
            shipper.close()
            bus.close()
