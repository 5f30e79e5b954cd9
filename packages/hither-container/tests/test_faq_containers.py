"""The FAQ's container examples end to end through hither-core: ``hi.Config(container=True)``
on the DefaultJobHandler and a ParallelJobHandler, jobs run by the Docker runner (found
through the ``hither.container_runners`` entry point) in the real engine."""
from __future__ import annotations

import os
import textwrap
import time

import numpy as np
import pytest

import hither as hi

import ct_funcs

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore:hither function name .* is registered twice")]


@pytest.fixture(params=["default", "parallel"])
def jh(request, docker_image, tmp_path, monkeypatch):
    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("HITHER_RESULTS_DIR", str(tmp_path / "results"))
    h = hi.DefaultJobHandler() if request.param == "default" else hi.ParallelJobHandler(2)
    yield h
    h.shutdown()
    jobs = tmp_path / "jobs"
    deadline = time.monotonic() + 10  # core removes a job folder just after reporting
    while jobs.exists() and os.listdir(str(jobs)):
        assert time.monotonic() < deadline, f"job folders left: {os.listdir(str(jobs))}"
        time.sleep(0.05)


def test_ones_then_add(jh):
    with hi.Config(job_handler=jh, container=True):
        a = ct_funcs.ones.run(n=4)
        s = ct_funcs.add.run(x=a, y=np.arange(4.0))
        np.testing.assert_array_equal(s.wait(120), np.arange(4.0) + 1)
    assert a.container == "docker://" + ct_funcs.IMAGE


def test_linear_algebra_pipeline(jh):
    with hi.Config(job_handler=jh, container=True):
        xroot = np.array([4, 5])
        a = np.array([[3, 4], [5, 6]])
        b = np.array([173, 214])
        ainv_job = ct_funcs.invert.run(x=a)
        product_job = ct_funcs.dot.run(x=b, y=ainv_job)
        x_job = ct_funcs.mult.run(x=xroot, y=xroot)
        assert np.allclose(x_job.wait(120), product_job.wait(120))


def test_it_runs_inside_the_image_and_not_on_the_host(jh):
    with hi.Config(job_handler=jh, container=True):
        inside = ct_funcs.in_image.run().wait(120)
    with hi.Config(job_handler=jh, container=False):
        outside = ct_funcs.in_image.run().wait(120)
    assert inside["sees_host_tree"] is False and outside["sees_host_tree"] is True
    assert 'VERSION_CODENAME=bookworm' in inside["os_release"]


def test_bad_container_is_a_clear_error(jh):
    with hi.Config(job_handler=jh, container=True):
        job = ct_funcs.bad_container.run(x=1)
        with pytest.raises(hi.errors.HitherError, match="no-such-image"):
            job.wait(120)


def test_a_file_written_inside_is_usable_on_the_host(jh):
    with hi.Config(job_handler=jh, container=True):
        f = ct_funcs.in_image.run(write="made-inside.txt").wait(120)
    assert isinstance(f, hi.File)
    with open(f.resolve()) as fh:
        assert fh.read() == "from the container"
    assert os.stat(f.resolve()).st_uid == os.getuid()


@pytest.mark.slow
def test_timeout_and_cancel(docker_image, tmp_path, monkeypatch, leftover_containers):
    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "jobs"))
    jh = hi.ParallelJobHandler(2)
    try:
        with hi.Config(job_handler=jh, container=True, job_timeout=1.5):
            t0 = time.monotonic()
            slow = ct_funcs.in_image.run(t=60)
            with pytest.raises(hi.JobTimeoutError):
                slow.wait(60)
            assert time.monotonic() - t0 < 30
        with hi.Config(job_handler=jh, container=True):
            job = ct_funcs.in_image.run(t=60.5)
            deadline = time.monotonic() + 60
            while not leftover_containers():
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            job.cancel()
            with pytest.raises(hi.JobCancelledException):
                job.wait(10)
        deadline = time.monotonic() + 1.0  # the container stops within a second ...
        while leftover_containers(running=True):
            assert time.monotonic() < deadline, leftover_containers(running=True)
            time.sleep(0.05)
        deadline = time.monotonic() + 15  # ... and is removed soon after
        while leftover_containers():
            assert time.monotonic() < deadline, leftover_containers()
            time.sleep(0.1)
    finally:
        jh.shutdown()


PROJECT_MOD = '''
import os
import hither as hi
import mylocalmod


@hi.function('faq_local', '0.1.0')
@hi.container('docker://{image}')
@hi.additional_files(['*.cfg'])
@hi.local_modules(['../mylocalmod'])
def faq_local(x):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, 'settings.cfg')) as f:
        return {{'y': mylocalmod.triple(x), 'cfg': f.read().strip()}}
'''


def test_local_modules_and_additional_files(jh, tmp_path, monkeypatch):
    root = tmp_path / "proj"
    (root / "app").mkdir(parents=True)
    (root / "mylocalmod").mkdir()
    (root / "mylocalmod" / "__init__.py").write_text("def triple(v):\n    return 3 * v\n")
    (root / "app" / "faq_app.py").write_text(textwrap.dedent(PROJECT_MOD.format(image=ct_funcs.IMAGE)))
    (root / "app" / "settings.cfg").write_text("shipped\n")
    monkeypatch.syspath_prepend(str(root / "app"))
    monkeypatch.syspath_prepend(str(root))
    import importlib
    import sys
    sys.modules.pop("faq_app", None)
    mod = importlib.import_module("faq_app")
    try:
        with hi.Config(job_handler=jh, container=True):
            assert mod.faq_local.run(x=5).wait(120) == {"y": 15, "cfg": "shipped"}
    finally:
        sys.modules.pop("faq_app", None)


def test_out_of_memory_is_a_clear_error(jh):
    with hi.Config(job_handler=jh, container=True, container_options={"memory": "96m"}):
        job = ct_funcs.hog.run(mb=1024)
        with pytest.raises(hi.WorkerDiedError, match="out-of-memory killer.*96m"):
            job.wait(120)
        assert ct_funcs.hog.run(mb=8).wait(120) == 8  # the next job runs


def test_warm_reuse_through_the_config(jh, leftover_containers):
    with hi.Config(job_handler=jh, container=True, container_options={"reuse": True}):
        out = [ct_funcs.where.run(i=i).wait(120) for i in range(4)]
    assert [o[2] for o in out] == [0, 1, 2, 3]
    assert len({o[0] for o in out}) == 1  # one container (jobs run one after another) ...
    assert len({o[1] for o in out}) == 4  # ... a fresh process for each job
    assert len(leftover_containers()) == 1
    from hither.plugins.containers import close_runners

    close_runners()  # what happens at exit
    assert leftover_containers() == []
