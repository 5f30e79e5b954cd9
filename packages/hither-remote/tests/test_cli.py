"""``hither-remote status``, ``jobs`` and ``cancel`` (click's CliRunner) against a real bus
served by a real ``hither-remote serve`` process; ``serve --help`` lists its env vars."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

import hither as hi
from hither.errors import JobCancelledException

import remote_funcs as rf
from hither_remote.cli import main

pytestmark = pytest.mark.timeout(90)


def bus_id_of(jh, function_name):
    return jh.bus.jobs.find_one({"function_name": function_name})["_id"]


def _args(db):
    return ["--mongo-url", db.mongo_url, "--database", db.database]


def test_status_jobs_and_cancel(serve, db, store, tmp_path):
    serve()
    runner = CliRunner()
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    idle = hi.RemoteJobHandler(database=db, compute_resource_id="nobody-serves-this", store=store)
    try:
        with hi.Config(job_handler=jh):
            assert rf.rt_add.run(x=40, y=2).wait(60) == 42
        with hi.Config(job_handler=idle):
            waiting = rf.rt_add.run(x=1, y=1)
            deadline = time.monotonic() + 20
            while not idle.bus.jobs.find_one({"resource_id": "nobody-serves-this"}):
                assert time.monotonic() < deadline
                time.sleep(0.05)

        r = runner.invoke(main, ["status", *_args(db)])
        assert r.exit_code == 0, r.output
        assert "resource1" in r.output and "alive" in r.output and "finished 1" in r.output
        assert "queued 1" in r.output

        r = runner.invoke(main, ["jobs", *_args(db)])
        assert r.exit_code == 0, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 2 and "rt_add" in lines[0] and "queued" in lines[0] and "finished" in lines[1]
        queued_id = lines[0].split("\t")[0]

        r = runner.invoke(main, ["cancel", queued_id, *_args(db)])
        assert r.exit_code == 0 and "cancelled" in r.output, r.output
        with pytest.raises(JobCancelledException):
            waiting.wait(10)  # the client sees the cancel made from the command line

        with hi.Config(job_handler=jh):
            assert rf.rt_talk.run(text="hello from the resource").wait(60) == 23
        talk_id = bus_id_of(jh, "rt_talk")
        r = runner.invoke(main, ["logs", talk_id, *_args(db)])
        assert r.exit_code == 0 and "said: hello from the resource" in r.output, r.output
        r = runner.invoke(main, ["logs", queued_id, *_args(db)])
        assert r.exit_code == 0 and "cancelled; no console output" in r.output, r.output

        r = runner.invoke(main, ["cancel", "no-such-job", *_args(db)])
        assert r.exit_code != 0 and "no job no-such-job" in r.output
    finally:
        jh.shutdown()
        idle.shutdown()


def test_serve_refuses_to_start_without_a_secret(monkeypatch, db):
    monkeypatch.delenv("HITHER_REMOTE_SECRET", raising=False)
    r = CliRunner().invoke(main, ["serve", "--resource-id", "r", *_args(db)])
    assert r.exit_code != 0 and "HITHER_REMOTE_SECRET" in r.output


def test_serve_help_names_its_environment_variables():
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--workers" in r.output and "HITHER_REMOTE_WORKERS" in r.output


def test_config_file_gives_defaults_and_never_the_secret(db, tmp_path):
    cfg = tmp_path / "remote.toml"
    cfg.write_text(f'mongo-url = "{db.mongo_url}"\ndatabase = "{db.database}"\n[jobs]\nlimit = 3\n')
    from hither_remote.bus import Bus
    from hither_remote.models import ResourceHeartbeat

    bus = Bus(db)
    bus.heartbeat(ResourceHeartbeat(_id="cfg-res/o", resource_id="cfg-res", owner="o", started=time.time(),
                                    last_seen=time.time()))
    bus.close()
    r = CliRunner().invoke(main, ["--config", str(cfg), "status"])
    assert r.exit_code == 0 and "cfg-res" in r.output, r.output  # the config's database was used
    cfg.write_text('[serve]\nsecret = "do-not-put-it-here"\n')
    r = CliRunner().invoke(main, ["--config", str(cfg), "status"])
    assert r.exit_code != 0 and "does not belong in the config file" in r.output
    assert "do-not-put-it-here" not in r.output
