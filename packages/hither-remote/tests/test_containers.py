"""Container jobs on the compute resource, with the real Docker Engine and the local image
``hither-test/python-numpy:3.11`` (``bash scripts/services.sh docker``): a ``serve``
process runs a job that asks for a container in it (network none), a cancel stops the
container, ``--no-containers`` refuses such jobs with a message the client sees, and
``--containers`` without an engine stops ``serve`` at start. No container is left."""
from __future__ import annotations

import socket
import time

import pytest
from click.testing import CliRunner

import hither as hi
from hither.errors import JobCancelledException
from hither.testing.services import unavailable

import remote_funcs as rf
from hither_remote.cli import main
from hither_remote.handler import RemoteJobError
from hither_remote.logs import read_chunks

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def docker_client():
    pytest.importorskip("hither_container", reason="containers on the resource need hither-container")
    try:
        from hither_container.docker_runner import client

        c = client()
        c.images.get(rf.IMAGE)
    except Exception as exc:  # noqa: BLE001 - no engine or no image
        unavailable(f"Docker or the image {rf.IMAGE} is missing (bash scripts/services.sh docker): {exc}")
    yield c
    c.close()


def _containers_of(c, pid: int):
    return c.api.containers(all=True, filters={"label": ["hither.job=1", f"hither.owner_pid={pid}"]})


def test_a_container_job_runs_in_its_image_and_a_cancel_stops_it(docker_client, serve, jh):
    server = serve()  # containers: auto (an engine answers here)
    with hi.Config(job_handler=jh, container=True):
        inside = rf.rt_where.run(x=1).wait(120)
    with hi.Config(job_handler=jh):
        host = rf.rt_where.run(x=2).wait(60)  # the same function, container not asked for
    here = socket.gethostname()
    assert inside["host"] != here and inside["nets"] == ["lo"], inside  # a container, network none
    assert host["host"] == here and host["nets"] != ["lo"], host
    assert inside["x"] == 1 and host["x"] == 2
    # the console of a container job reaches the bus as well (live logs)
    first = jh.bus.jobs.find_one({"function_name": "rt_where"}, sort=[("created", 1)])
    assert f"running on {inside['host']}" in "".join(c.text for c in read_chunks(jh.bus, first["_id"]))

    with hi.Config(job_handler=jh, container=True):
        j = rf.rt_where.run(x=3, t=300)
        deadline = time.monotonic() + 60
        while not [c for c in _containers_of(docker_client, server.proc.pid) if c["State"] == "running"]:
            assert time.monotonic() < deadline, f"the container never started:\n{server.log()}"
            time.sleep(0.1)
        t0 = time.monotonic()
        j.cancel()
        with pytest.raises(JobCancelledException):
            j.wait(10)
        while _containers_of(docker_client, server.proc.pid):
            assert time.monotonic() - t0 < 5, "the cancelled job's container is still there"
            time.sleep(0.1)
    server.wait_log("cancelled")
    assert server.stop() == 0
    assert _containers_of(docker_client, server.proc.pid) == []


def test_no_containers_refuses_container_jobs_with_a_clear_message(docker_client, serve, jh):
    serve("resource", "--no-containers")
    with hi.Config(job_handler=jh, container=True):
        with pytest.raises(RemoteJobError, match="does not run containers") as ei:
            rf.rt_where.run(x=1).wait(60)
    assert "--no-containers" in str(ei.value) and "rt_where" in str(ei.value)
    with hi.Config(job_handler=jh):
        assert rf.rt_where.run(x=4).wait(60)["x"] == 4  # host jobs still run


def test_containers_on_needs_an_engine_at_start(db, monkeypatch):
    monkeypatch.setenv("HITHER_REMOTE_CONTAINERS", "true")
    monkeypatch.setenv("HITHER_REMOTE_CONTAINER_ENGINE", "no-such-engine")
    r = CliRunner().invoke(main, ["serve", "--resource-id", "r", "--mongo-url", db.mongo_url,
                                  "--database", db.database])
    assert r.exit_code != 0, r.output
    assert "containers are on" in r.output and "no-such-engine" in r.output, r.output


def test_a_container_job_cannot_reach_the_secret_file(docker_client, serve, jh, tmp_path):
    """Secret exposed, files too: a job that asks for a container sees neither the secret
    file that the serve's config file names, nor that config file, nor the serve process
    (a pid namespace of its own), while the same job run on the host reads the file."""
    from hither_remote.signing import load_secret

    secret = load_secret().key().decode()
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    config = tmp_path / "serve.toml"
    config.write_text(f'secret-file = "{secret_file}"\n')
    server = serve(env={"HITHER_REMOTE_CONFIG": str(config)})
    pid = server.proc.pid
    paths = [str(secret_file), str(config), f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"]
    with hi.Config(job_handler=jh, container=True):
        inside = rf.rt_peek_in.run(paths=paths).wait(120)
    with hi.Config(job_handler=jh):
        host = rf.rt_peek.run(paths=[str(secret_file)]).wait(60)
    assert host[str(secret_file)] == secret, "the limit documented for jobs on the host changed"
    for path in paths:
        assert inside[path] == "FileNotFoundError", (path, inside[path][:200])
    for what, text in inside.items():
        assert secret not in text, f"the secret is visible to a container job in {what}"
