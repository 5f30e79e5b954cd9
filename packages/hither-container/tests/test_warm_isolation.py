"""Attacks on a warm container, on the real Docker Engine: job A plants what it can (a
command for the loop, a runtime that patches process 1, files in /tmp and /dev/shm, a
process in a session of its own, a secret on its output); job B, the next job in the same
container, must see none of it, and a crash of B reports B's output only, bounded."""
from __future__ import annotations

import os

import pytest

from hither.models import ContainerOptions
from hither.outside.jobdir import read_job_outputs
from hither_container.docker_runner import DockerRunner
from hither_container.jobmount import ContainerCrashedError

import ct_attack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def warm_runner():
    r = DockerRunner(ContainerOptions(reuse=True))
    yield r
    r.close()


def _value(runner, image, d):
    status, value, error, ri = read_job_outputs(d, runner.run(image, d, timeout=120))
    assert error is None, error
    return value


@pytest.mark.parametrize("init", [True, False])  # the loop under docker's init, or process 1
def test_a_job_cannot_change_or_watch_the_next_one(job_dir_of, docker_image, init):
    warm_runner = DockerRunner(ContainerOptions(reuse=True, init=init))
    try:
        _attack_then_look(warm_runner, job_dir_of, docker_image)
    finally:
        warm_runner.close()


def _attack_then_look(warm_runner, job_dir_of, docker_image):
    tried = _value(warm_runner, docker_image, job_dir_of(ct_attack.ct_plant))
    # the control folder is read-only in the container, /proc/1 closed to the job
    assert tried["ctl_job"] != "done" and tried["ctl_runtime"] != "done"
    assert tried["ctl_loop"] != "done" and tried["proc1_fd"] != "done"
    seen = _value(warm_runner, docker_image, job_dir_of(ct_attack.ct_victim))
    assert seen["sum"] == 3  # process 1 ran no planted runtime
    assert "left-by-A" not in seen["tmp"] and seen["shm"] == []
    assert not [c for c in seen["procs"].values() if "hither-spy" in c or "sleep" in c]
    # the exchange folder holds the job's own directory (and its own output file) only
    assert [e for e in seen["jobs"] if not e.endswith(".log")] == [seen["own"]]


def test_a_crash_shows_the_jobs_own_output_only_and_bounded(warm_runner, job_dir_of,
                                                            docker_image, docker_client,
                                                            leftover_containers):
    _value(warm_runner, docker_image, job_dir_of(ct_attack.ct_plant))
    (name,) = leftover_containers()
    assert b"password=" not in docker_client.containers.get(name).logs()  # not in the log
    with pytest.raises(ContainerCrashedError, match="exit code 9") as info:
        warm_runner.run(docker_image, job_dir_of(ct_attack.ct_crash_loud, mb=4), timeout=120)
    assert "my own last words" in str(info.value)
    assert "password=" not in info.value.logs
    assert len(info.value.logs) <= 70 * 1024  # a tail, not the job's 4 MB


def test_the_loops_channel_is_gone_from_the_control_folder(warm_runner, job_dir_of,
                                                           docker_image):
    _value(warm_runner, docker_image, job_dir_of(ct_attack.ct_victim))
    from hither_container import warm

    (w,) = [w for ws in warm._pool.idle.values() for w in ws]  # type: ignore[union-attr]
    names = os.listdir(w.ctl)
    assert "cmd" not in names and "ans" not in names
    assert sorted(n for n in names if not n.startswith("runtime-")) == ["lifeline.py",
                                                                        "warm_loop.py"]


@pytest.mark.parametrize("reuse", [False, True])
def test_hardened_by_default_on_the_engine(job_dir_of, docker_image, reuse):
    r = DockerRunner(ContainerOptions(reuse=reuse))
    try:
        seen = _value(r, docker_image, job_dir_of(ct_attack.ct_confinement))
    finally:
        r.close()
    assert int(seen["cap_eff"], 16) == 0 and seen["no_new_privs"] == "1"
    assert seen["image_writable"] is False and seen["home"] == "/tmp"
    assert seen["pids_max"] == "4096" and seen["init"] == "docker-init"
    loose = DockerRunner(ContainerOptions(reuse=reuse, pids_limit=None, read_only=False,
                                          init=False, no_new_privileges=False, cap_drop=[]))
    try:
        seen = _value(loose, docker_image, job_dir_of(ct_attack.ct_confinement))
    finally:
        loose.close()
    assert int(seen["cap_eff"], 16) != 0 and seen["no_new_privs"] == "0"
    assert seen["image_writable"] is True and seen["pids_max"] in ("max", None)
    assert seen["init"] != "docker-init"
