"""The Docker runner's own behaviour against the real Docker Engine: images (local, a
failed pull named once), options (env, binds, network, user, hither-core mounted or the
stand-in), labels and sweeping of stale containers, an engine that does not answer, and
warm containers (reuse, a fresh one after a crash or timeout, idle stop, close)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hither.errors import JobTimeoutError
from hither.outside.jobdir import read_job_outputs
from hither.errors import ContainerError, ContainerImageError, is_infrastructure_failure
from hither.models import ContainerOptions
from hither_container.docker_runner import DockerRunner, sweep_stale
from hither_container.engine import create_kwargs, device_requests, labels
from hither_container.jobmount import ContainerCrashedError, HITHER_MOUNT

import ct_funcs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def runners():
    made = []

    def make(**options):
        r = DockerRunner(ContainerOptions(**options))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def run_value(runner, image, d, timeout=120):
    status, value, error, ri = read_job_outputs(d, runner.run(image, d, timeout=timeout))
    assert error is None, error
    return value


# ------------------------------------------------------------------ images
def test_unpullable_image_is_named_and_not_retried(runners, job_dir_of, docker_client):
    bad = "docker://127.0.0.1:9/hither-test/no-such-image:1"  # a registry on loopback: refused
    d = job_dir_of(ct_funcs.ct_noop)
    with pytest.raises(ContainerImageError, match="127.0.0.1:9/hither-test/no-such-image:1"):
        runners().run(bad, d)
    t0 = time.monotonic()
    with pytest.raises(ContainerImageError, match="could not be pulled"):
        runners().run(bad, d)  # remembered: no second pull
    assert time.monotonic() - t0 < 0.5


def test_pull_never_and_foreign_schemes(runners, job_dir_of, docker_client):
    d = job_dir_of(ct_funcs.ct_noop)
    with pytest.raises(ContainerImageError, match="pulling is off"):
        runners(extra={"pull": "never"}).run("docker://hither-test/absent-never-pulled:0", d)
    with pytest.raises(ContainerImageError, match="Apptainer"):
        runners().run("library://sylabs/default/alpine:latest", d)


def test_an_engine_that_does_not_answer(monkeypatch, job_dir_of, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert DockerRunner.is_available() is False
    with pytest.raises(ContainerError, match="does not answer.*services.sh docker") as info:
        DockerRunner().run("docker://hither-test/python-numpy:3.11", str(tmp_path))
    # not the job's fault: hi.Retry retries it by default (issue 21)
    assert is_infrastructure_failure(info.value)


def test_a_socket_this_user_may_not_use_is_not_retried(tmp_path):
    from hither_container.engine import engine_error

    err = engine_error(PermissionError(13, "Permission denied"), "no Docker Engine")
    assert "permission denied" in str(err) and not is_infrastructure_failure(err)


# ------------------------------------------------------------------ options
def test_defaults_network_none_user_and_real_hither(runners, job_dir_of, docker_image):
    d = job_dir_of(ct_funcs.ct_probe)
    v = run_value(runners(), docker_image, d)
    assert v["nets"] == ["lo"]  # network "none": loopback only
    assert v["uid"] == os.getuid() and v["cwd"] == d
    assert v["stand_in"] is False and v["hither_file"].startswith(HITHER_MOUNT)
    assert "bookworm" in v["os_release"]


def test_without_the_hither_mount_the_stand_in_serves(runners, job_dir_of, docker_image):
    d = job_dir_of(ct_funcs.ct_probe)
    v = run_value(runners(extra={"mount_hither": False}), docker_image, d)
    assert v["stand_in"] is True and v["hither_file"] is None
    assert "PYTHONPATH" not in v["env"]


def test_env_and_read_only_binds(runners, job_dir_of, docker_image, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("host data")
    d = job_dir_of(ct_funcs.ct_probe)
    v = run_value(runners(env={"HITHER_TEST_VAR": "42"}), docker_image, d)
    assert v["env"]["HITHER_TEST_VAR"] == "42"
    d = job_dir_of(ct_funcs.ct_write_ro, path="/data/data.txt")
    seen, how = run_value(runners(binds=[f"{shared}:/data:ro"]), docker_image, d)
    assert seen == "host data" and how in ("OSError", "PermissionError")
    assert (shared / "data.txt").read_text() == "host data"
    with pytest.raises(ContainerError, match="does not exist"):
        runners(binds=[f"{tmp_path}/absent:/x"]).run(docker_image, d)


def test_files_written_under_a_non_root_uid(runners, job_dir_of, docker_image, tmp_path):
    if os.getuid() != 0:
        pytest.skip("giving a job folder to another uid needs root")
    out = "owned.txt"
    d = job_dir_of(ct_funcs.ct_probe, write_to=out)
    for root, dirs, files in os.walk(d):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.chown(n, 4321, 4321)
    v = run_value(runners(user="4321:4321"), docker_image, d)
    assert v["uid"] == 4321
    assert os.stat(os.path.join(d, out)).st_uid == 4321


def test_network_option_is_passed(runners, job_dir_of, docker_image):
    # "host" would reach beyond loopback on a real network; "none" is tested above, so this
    # only checks the option reaches the engine (a named network that does not exist)
    d = job_dir_of(ct_funcs.ct_noop)
    with pytest.raises(ContainerError, match="no-such-net"):
        runners(network="no-such-net").run(docker_image, d)


def test_create_arguments_gpu_memory_labels():
    # No GPU on this machine: the device requests are checked as built, not run.
    o = ContainerOptions(gpus=2, memory="256m", env={"A": "1"})
    kw = create_kwargs("img:1", o, [("/h", "/c", "ro")], ["python3", "x"], "/w", "job")
    assert kw["mem_limit"] == kw["memswap_limit"] == "256m"
    assert kw["network_mode"] == "none" and kw["user"] == f"{os.getuid()}:{os.getgid()}"
    assert kw["volumes"] == {"/h": {"bind": "/c", "mode": "ro"}}
    assert kw["environment"]["A"] == "1" and kw["environment"]["PYTHONPATH"] == HITHER_MOUNT
    assert kw["labels"]["hither.owner_pid"] == str(os.getpid())
    (req,) = kw["device_requests"]
    assert req["Count"] == 2 and req["Capabilities"] == [["gpu"]]
    (req,) = device_requests("all")
    assert req["Count"] == -1
    (req,) = device_requests("0,2")
    assert req["DeviceIDs"] == ["0", "2"]
    assert device_requests(None) == []


# ------------------------------------------------------------------ cleanup
def test_stale_containers_of_dead_owners_are_swept(docker_client):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that is gone
    lab = labels("job")
    lab["hither.owner_pid"] = str(proc.pid)
    ct = docker_client.containers.create("hither-test/python-numpy:3.11", ["sleep", "600"],
                                         labels=lab, network_mode="none")
    mine = docker_client.containers.create("hither-test/python-numpy:3.11", ["sleep", "600"],
                                           labels=labels("job"), network_mode="none")
    try:
        removed = sweep_stale(docker_client)
        assert ct.name in removed and mine.name not in removed
        names = [x["Names"][0].lstrip("/") for x in docker_client.api.containers(all=True)]
        assert ct.name not in names and mine.name in names
    finally:
        for c in (ct, mine):
            try:
                c.remove(force=True)
            except Exception:
                pass


def _wait_then_kill(proc, ready, docker_client, timeout=60):
    """Wait until ``ready()`` while ``proc`` runs, then SIGKILL it (no cleanup runs in it);
    on a failure kill it anyway and sweep what it left, so a failed test leaves nothing."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, "the job did not start"
            time.sleep(0.1)
    except BaseException:
        proc.kill()
        proc.wait()
        sweep_stale(docker_client)
        raise
    proc.kill()
    proc.wait()
    return time.monotonic()


def _kill_a_caller_mid_job(tmp_path, docker_client, job_dir_of, reuse):
    """A child Python process runs a sleeping job in a container and is SIGKILLed mid-job;
    returns its label filter and the time of the kill."""
    d = job_dir_of(ct_funcs.ct_sleep, t=600)
    script = tmp_path / "caller.py"
    script.write_text(
        "import sys\nfrom hither_container.docker_runner import DockerRunner\n"
        "from hither.models import ContainerOptions\n"
        f"DockerRunner(ContainerOptions(reuse={reuse})).run("
        f"'docker://hither-test/python-numpy:3.11', {d!r})\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    flt = {"label": ["hither.job=1", f"hither.owner_pid={proc.pid}"]}
    # running, and the job started in it (the runner extracted its code bundle; a warm
    # container's job directory is reached through the symbolic link at its own path)
    return flt, _wait_then_kill(proc, lambda: bool(docker_client.containers.list(filters=flt))
                                and os.path.isdir(os.path.join(d, "code")), docker_client)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("reuse", [False, True])
def test_a_killed_callers_container_stops_at_once(tmp_path, docker_client, job_dir_of, reuse):
    """The lifeline: the container stops within seconds of its launcher's SIGKILL, with no
    hither process sweeping (this test starts no DockerRunner); the sweep, the second line
    of defence, then removes the stopped container (and a warm one's exchange folder)."""
    flt, killed = _kill_a_caller_mid_job(tmp_path, docker_client, job_dir_of, reuse)
    try:
        while docker_client.containers.list(filters=flt):  # running ones only
            assert time.monotonic() - killed < 10, "the container outlived its launcher"
            time.sleep(0.1)
    except BaseException:
        sweep_stale(docker_client)  # a failed test leaves no container either
        raise
    (ct,) = docker_client.containers.list(all=True, filters=flt)  # stopped, not removed
    assert ct.status == "exited" and ct.attrs["State"]["ExitCode"] == 137
    assert b"the process that started this container is gone" in ct.logs()
    exchange = {os.path.dirname(m["Source"]) for m in ct.attrs["Mounts"]
                if "hither-warm-" in m["Source"]}  # its jobs (rw) and ctl (ro) folders
    assert len(exchange) == (1 if reuse else 0)
    removed = sweep_stale(docker_client)
    assert removed == [ct.name]
    assert not docker_client.containers.list(all=True, filters=flt)
    assert not any(os.path.exists(x) for x in exchange)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reuse", [False, True])
def test_the_sweep_removes_the_job_folder_of_a_killed_caller(tmp_path, docker_client, monkeypatch, reuse):
    """Issue 21: the job folder hither made for a container job (``hither-job-*``, by the
    outside path) of a SIGKILLed caller goes with its container; a folder of another name
    (a caller's own, a Slurm queue entry) stays."""
    import hither as hi
    from hither.outside.path import prepare
    from hither.testing.container_conformance import ParkedHandler

    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("HITHER_RESULTS_DIR", str(tmp_path / "results"))
    with hi.Config(job_handler=ParkedHandler(), container=False):
        job = ct_funcs.ct_sleep.run(t=600)
    d = prepare(job)  # as the outside path makes it for a container job
    assert os.path.basename(d).startswith("hither-job-")
    script = tmp_path / "caller.py"
    script.write_text(
        "from hither_container.docker_runner import DockerRunner\n"
        "from hither.models import ContainerOptions\n"
        f"DockerRunner(ContainerOptions(reuse={reuse})).run("
        f"'docker://hither-test/python-numpy:3.11', {d!r})\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    flt = {"label": ["hither.job=1", f"hither.owner_pid={proc.pid}"]}
    _wait_then_kill(proc, lambda: bool(docker_client.containers.list(filters=flt))
                    and os.path.isdir(os.path.join(d, "code")), docker_client)
    try:
        assert os.path.isdir(d)  # left behind by the killed caller
        deadline = time.monotonic() + 30
        while not sweep_stale(docker_client):  # (once the lifeline stopped it, or at once)
            assert time.monotonic() < deadline, "the container was never swept"
            time.sleep(0.2)
    finally:
        sweep_stale(docker_client)
        job.cancel()
    assert not os.path.exists(d), f"{d} outlived its caller's sweep"
    assert not docker_client.containers.list(all=True, filters=flt)


def test_without_a_lifeline_the_sweep_still_removes_a_killed_callers_container(
        tmp_path, docker_client, job_dir_of, monkeypatch):
    """The second line of defence alone: no lifeline (raw docker arguments turn stdin off),
    so the container runs on after its launcher's SIGKILL until a later sweep."""
    d = job_dir_of(ct_funcs.ct_sleep, t=600)
    script = tmp_path / "caller.py"
    script.write_text(
        "from hither_container.docker_runner import DockerRunner\n"
        "from hither.models import ContainerOptions\n"
        "DockerRunner(ContainerOptions(extra={'docker': {'stdin_open': False}})).run("
        f"'docker://hither-test/python-numpy:3.11', {d!r})\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    flt = {"label": ["hither.job=1", f"hither.owner_pid={proc.pid}"]}
    _wait_then_kill(proc, lambda: bool(docker_client.containers.list(filters=flt)) and
                    os.path.isdir(os.path.join(d, "code")), docker_client)
    time.sleep(2)
    try:
        (ct,) = docker_client.containers.list(filters=flt)  # still running: nothing stopped it
        assert sweep_stale(docker_client) == [ct.name]
    finally:
        sweep_stale(docker_client)
    assert not docker_client.containers.list(all=True, filters=flt)


@pytest.mark.parametrize("reuse", [False, True])
def test_a_job_reading_stdin_sees_no_input(runners, job_dir_of, docker_image, reuse):
    r = runners(reuse=reuse)
    for _ in range(2 if reuse else 1):  # a warm container's second job too
        t = time.monotonic()
        assert run_value(r, docker_image, job_dir_of(ct_funcs.ct_read_stdin), timeout=60) == \
            {"job": "", "child": "''"}
        assert time.monotonic() - t < 30


def test_lifelines_are_closed_in_forked_children(runners, job_dir_of, docker_image,
                                                 leftover_containers):
    """A process forked while a warm container is held keeps no copy of its lifeline: the
    container does not wait for the child to end (the parent closes it here, as its death
    would)."""
    from hither_container import lifeline_host

    r = runners(reuse=True)
    run_value(r, docker_image, job_dir_of(ct_funcs.ct_noop))
    (w,) = [w for ws in __import__("hither_container.warm", fromlist=["pool"])._pool.idle.values()
            for w in ws]
    fd = w.line.fileno()
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: is the lifeline's descriptor still open here?
        try:
            os.fstat(fd)
            os.write(wr, b"open")
        except OSError:
            os.write(wr, b"closed")
        os._exit(0)
    os.close(wr)
    assert os.read(rd, 16) == b"closed"
    os.waitpid(pid, 0)
    assert w.line in lifeline_host._held


# ------------------------------------------------------------------ warm containers
def test_warm_container_is_reused_with_a_clean_folder_per_job(runners, job_dir_of, docker_image,
                                                              leftover_containers):
    r = runners(reuse=True)
    d1 = job_dir_of(ct_funcs.ct_touch, name="junk.txt")
    assert "junk.txt" in run_value(r, docker_image, d1)
    sibling = os.path.join(os.path.dirname(d1), "not-for-the-container.txt")
    with open(sibling, "w") as f:
        f.write("beside the job directories")
    probes = [run_value(r, docker_image, job_dir_of(ct_funcs.ct_probe, look=[sibling, d1]))
              for _ in range(3)]
    assert len({p["hostname"] for p in probes}) == 1  # one container ...
    assert len({p["pid"] for p in probes}) == 3  # ... a new process per job
    for p in probes:
        assert "junk.txt" not in p["cwd_entries"] and p["cwd"] != d1
        # the container sees its exchange folder only, not the folder of all job directories
        assert p["seen"] == {sibling: False, d1: False}
    assert len(leftover_containers()) == 1
    r.close()
    assert leftover_containers() == []


def test_a_crash_or_timeout_takes_the_warm_container_down(runners, job_dir_of, docker_image,
                                                          leftover_containers):
    r = runners(reuse=True)
    first = run_value(r, docker_image, job_dir_of(ct_funcs.ct_probe))["hostname"]
    with pytest.raises(ContainerCrashedError, match="exit code 9"):
        r.run(docker_image, job_dir_of(ct_funcs.ct_exit, code=9))
    assert leftover_containers() == []
    second = run_value(r, docker_image, job_dir_of(ct_funcs.ct_probe))["hostname"]
    assert second != first
    with pytest.raises(JobTimeoutError):
        r.run(docker_image, job_dir_of(ct_funcs.ct_sleep, t=60), timeout=1)
    assert leftover_containers() == []
    third = run_value(r, docker_image, job_dir_of(ct_funcs.ct_probe))["hostname"]
    assert third not in (first, second)


def test_idle_warm_containers_stop(runners, job_dir_of, docker_image, leftover_containers):
    r = runners(reuse=True, extra={"idle_timeout": 1})
    run_value(r, docker_image, job_dir_of(ct_funcs.ct_noop))
    assert len(leftover_containers()) == 1
    deadline = time.monotonic() + 15
    while leftover_containers():
        assert time.monotonic() < deadline, "idle warm container still there"
        time.sleep(0.2)


def test_warm_containers_stop_when_the_program_exits(tmp_path, docker_client, job_dir_of):
    d = job_dir_of(ct_funcs.ct_noop)
    script = tmp_path / "caller.py"
    script.write_text(
        "import os\nfrom hither_container.docker_runner import DockerRunner\n"
        "from hither.models import ContainerOptions\n"
        "r = DockerRunner(ContainerOptions(reuse=True))\n"
        f"assert r.run('docker://hither-test/python-numpy:3.11', {d!r}) == 0\n"
        "print(os.getpid())\n")  # exits without close(): atexit stops the container
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    flt = {"label": ["hither.job=1", f"hither.owner_pid={out.stdout.strip()}"]}
    assert docker_client.containers.list(all=True, filters=flt) == []


def test_an_image_without_python3(runners, job_dir_of, docker_client):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # an image holding one text file
        data = b"no python here\n"
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    docker_client.api.import_image_from_data(buf.getvalue(), repository="hither-test/no-python",
                                             tag="1")
    try:
        d = job_dir_of(ct_funcs.ct_noop)
        with pytest.raises(ContainerError, match="needs python3"):
            runners().run("docker://hither-test/no-python:1", d)
    finally:
        docker_client.images.remove("hither-test/no-python:1", force=True)


def test_processes_a_warm_job_leaves_behind_die_with_it(runners, job_dir_of, docker_image):
    r = runners(reuse=True)
    pid = run_value(r, docker_image, job_dir_of(ct_funcs.ct_spawn))
    states = run_value(r, docker_image, job_dir_of(ct_funcs.ct_proc_states))
    assert str(pid) not in states  # killed and reaped: neither running nor a zombie
    assert "Z" not in states.values()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reuse", [False, True])
def test_a_killed_program_with_a_parallel_handler_leaves_no_running_container(
        tmp_path, docker_client, reuse):
    """A user's program with a ParallelJobHandler running a container job is SIGKILLed:
    the container stops through its lifeline (no hither process sweeps meanwhile), then
    the sweep removes its record."""
    here = os.path.dirname(os.path.abspath(__file__))
    marker = tmp_path / "started"
    script = tmp_path / "program.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {here!r})\nimport hither as hi\nimport ct_funcs\n"
        "jh = hi.ParallelJobHandler(1)\n"
        "with hi.Config(job_handler=jh, container='docker://hither-test/python-numpy:3.11',\n"
        f"               container_options={{'reuse': {reuse}}}):\n"
        "    job = ct_funcs.ct_sleep.run(t=600)\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "job.wait()\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    before = {ct["Id"] for ct in docker_client.api.containers(all=True)}
    mine: list = []

    def running() -> bool:  # the program's container, running the job
        if marker.exists():
            mine[:] = [ct["Id"] for ct in docker_client.api.containers(
                filters={"label": "hither.job=1"}) if ct["Id"] not in before]
        return bool(mine)

    _wait_then_kill(proc, running, docker_client, timeout=90)
    killed = time.monotonic()
    try:
        while docker_client.api.containers(filters={"id": mine}):  # running ones
            assert time.monotonic() - killed < 10, "a container outlived the program"
            time.sleep(0.1)
        deadline = time.monotonic() + 10  # its owner's pid is gone (reaped above)
        while set(mine) - set(sweep_stale(docker_client)) and docker_client.api.containers(
                all=True, filters={"id": mine}):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for i in mine:
            try:
                docker_client.api.remove_container(i, force=True)
            except Exception:  # noqa: BLE001 - removed already
                pass
    assert not docker_client.api.containers(all=True, filters={"id": mine})


@pytest.mark.parametrize("init", [False, True])
def test_the_runners_own_timeout_is_on_time_as_process_1(runners, job_dir_of, docker_image, init):
    """Without docker's init the runner is the container's process 1: its watchdog must
    still end it at the job's timeout, not leave it to the launcher's grace period."""
    import hither as hi

    with hi.Config(job_timeout=1):
        d = job_dir_of(ct_funcs.ct_sleep, t=60)
    with open(os.path.join(d, "spec.json")) as f:
        assert '"timeout": 1' in f.read()
    t0 = time.monotonic()
    code = runners(init=init).run(docker_image, d, timeout=6)  # the launcher's 5 s grace
    elapsed = time.monotonic() - t0
    status, value, error, ri = read_job_outputs(d, code)
    assert "JobTimeoutError" in repr(error)
    assert elapsed < 4, f"stopped after {elapsed:.1f} s, not at the job's 1 s timeout"
