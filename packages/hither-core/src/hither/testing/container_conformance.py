"""Conformance tests every ``hither.plugins.interfaces.ContainerRunner`` must pass (needs pytest),
and ``HostPythonRunner``, a real runner that uses this host's Python instead of an image.

A runner's test module subclasses :class:`ContainerRunnerConformance` and provides the
fixtures ``runner_name`` (the name the runner is registered under in
``hither.container_runners``) and ``image`` (an image URL it can run that has Python >= 3.8
and numpy). The tests run real jobs through ``hi.DefaultJobHandler`` and
``hi.ParallelJobHandler`` with ``hi.Config(container=image, container_engine=runner_name)``,
and drive ``runner.run`` directly. Example::

    from hither.testing.container_conformance import ContainerRunnerConformance

    class TestDockerConformance(ContainerRunnerConformance):
        @pytest.fixture
        def runner_name(self):
            return "docker"

        @pytest.fixture
        def image(self):
            return "docker://hither-test/python-numpy:3.11"

Class attribute ``large_array_bytes`` sets the size of the array that travels through the
job folder.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterator, Optional

from hither.testing._modules import job_module

import numpy as np
import pytest

from hither.errors import JobCancelledException, JobTimeoutError, WorkerDiedError
from hither.plugins.interfaces import ContainerRunner, JobHandler
from hither.outside.path import SubprocessLauncher, prepare
from hither.outside.jobdir import read_job_outputs

JOB_FUNCS = '''
import os
import tempfile
import time
import numpy as np
import hither as hi


@hi.function('cc_sum', '0.1.0')
def cc_sum(a, t=0.0):
    time.sleep(t)
    print("summing in", os.getpid())
    return {'sum': float(np.sum(a)), 'pid': os.getpid(), 'double': a * 2}


@hi.function('cc_fail', '0.1.0')
def cc_fail(n):
    raise ValueError("no good: %d" % n)


@hi.function('cc_crash', '0.1.0')
def cc_crash():
    os._exit(3)


@hi.function('cc_read', '0.1.0')
def cc_read(f):
    with open(f) as fh:
        return fh.read()


@hi.function('cc_write', '0.1.0')
def cc_write(text, path=None):
    # a File written in a folder that is gone once the job directory is cleaned up, or at
    # a path chosen by the caller (which may also exist, with other content, on the host)
    if path is None:
        path = os.path.join(tempfile.mkdtemp(dir=os.getcwd()), 'out.txt')
    with open(path, 'w') as fh:
        fh.write(text)
    return hi.File(path)
'''


class ParkedHandler(JobHandler):
    """Keeps jobs queued and never runs them: for tests that write a job into a job
    directory and run it by hand. Cancel the jobs at the end (``job.cancel()``)."""

    name = "parked"
    supports_timeout = True

    def submit(self, job: Any, inline: bool) -> None:
        pass

    def cancel(self, job: Any) -> bool:
        return False


class HostPythonRunner(ContainerRunner):
    """A real ContainerRunner that runs the job directory with this host's Python instead
    of an image (``hostpython://anything``): the whole container path of the handlers is
    exercised — job directory, runner, outcome, timeout, cancel, crash — without the
    isolation of a real engine. Register it with
    ``registry.register("container_runners", "hostpython", HostPythonRunner)``."""

    name = "hostpython"
    schemes = ("hostpython",)
    #: exit codes to return instead of running, one per run (e.g. 137: "OOM-killed")
    fake_exit_codes: "list[int]" = []

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._launcher = SubprocessLauncher()

    @classmethod
    def is_available(cls) -> bool:
        return True

    def run(self, image: str, job_dir: str, timeout: Optional[float] = None) -> int:
        if HostPythonRunner.fake_exit_codes:
            return HostPythonRunner.fake_exit_codes.pop(0)
        return self._launcher.launch(job_dir, timeout)

    def kill(self, job_dir: str) -> None:
        self._launcher.kill(job_dir)


class ContainerRunnerConformance:
    """The behaviour every container runner must show (see the module docstring)."""

    large_array_bytes = 32 * 1024 * 1024

    # -------------------------------------------------------------- fixtures
    @pytest.fixture
    def funcs(self, tmp_path: Any, monkeypatch: Any) -> Any:
        monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "jobs"))
        return job_module("cc_funcs", JOB_FUNCS)

    @pytest.fixture(params=["default", "parallel"])
    def handler(self, request: Any) -> Iterator[Any]:
        import hither as hi

        jh = hi.DefaultJobHandler() if request.param == "default" else hi.ParallelJobHandler(2)
        yield jh
        jh.shutdown()

    def config(self, runner_name: str, image: str, **kw: Any) -> Any:
        import hither as hi

        return hi.Config(container=image, container_engine=runner_name, **kw)

    # -------------------------------------------------------------- through the handlers
    def test_result_error_and_console(self, funcs: Any, handler: Any, runner_name: str, image: str,
                                      tmp_path: Any) -> None:
        import hither as hi

        with hi.Config(job_handler=handler), self.config(runner_name, image):
            ok = funcs.cc_sum.run(a=np.arange(5.0))
            bad = funcs.cc_fail.run(n=7)
            r = ok.wait(120)
            with pytest.raises(ValueError, match="no good: 7"):
                bad.wait(120)
        assert r["sum"] == 10.0 and r["pid"] != os.getpid()
        np.testing.assert_array_equal(r["double"], np.arange(5.0) * 2)
        assert "summing in" in ok.get_runtime_info().stdout
        assert "cc_fail" in bad.get_error().remote_traceback
        jobs_dir = os.environ["HITHER_TEMP_DIR"]
        assert not os.path.exists(jobs_dir) or os.listdir(jobs_dir) == []  # job dirs are cleaned up

    @pytest.mark.slow
    def test_timeout_stops_the_job(self, funcs: Any, handler: Any, runner_name: str, image: str) -> None:
        import hither as hi

        with hi.Config(job_handler=handler), self.config(runner_name, image, job_timeout=2.0):
            t0 = time.monotonic()
            job = funcs.cc_sum.run(a=np.ones(2), t=60)
            with pytest.raises(JobTimeoutError):
                job.wait(60)
        assert time.monotonic() - t0 < 30

    def test_cancel_a_running_job(self, funcs: Any, runner_name: str, image: str) -> None:
        import hither as hi

        jh = hi.ParallelJobHandler(1)
        try:
            with hi.Config(job_handler=jh), self.config(runner_name, image):
                job = funcs.cc_sum.run(a=np.ones(2), t=60)
                deadline = time.monotonic() + 60
                while job.get_status().value != "running" and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(1.0)  # let the container start
                assert job.cancel()
                with pytest.raises(JobCancelledException):
                    job.wait(10)
                # the handler goes on: the next job runs
                assert funcs.cc_sum.run(a=np.ones(3)).wait(120)["sum"] == 3.0
        finally:
            jh.shutdown()

    def test_crash_is_a_clear_error(self, funcs: Any, handler: Any, runner_name: str, image: str) -> None:
        import hither as hi

        with hi.Config(job_handler=handler), self.config(runner_name, image):
            with pytest.raises(WorkerDiedError, match="exit code 3"):
                funcs.cc_crash.run().wait(120)

    def test_files_in_and_out(self, funcs: Any, handler: Any, runner_name: str, image: str,
                              tmp_path: Any) -> None:
        import hither as hi

        src = tmp_path / "in.txt"
        src.write_text("input content")
        with hi.Config(job_handler=handler), self.config(runner_name, image):
            assert funcs.cc_read.run(f=hi.File(str(src))).wait(120) == "input content"
            # written in a folder of the job's own that is gone after the job
            out = funcs.cc_write.run(text="made inside").wait(120)
        assert isinstance(out, hi.File)
        with open(out) as fh:
            assert fh.read() == "made inside"
        if hasattr(os, "getuid"):
            assert os.stat(os.fspath(out)).st_uid == os.getuid()

    def test_large_array_round_trip(self, funcs: Any, runner_name: str, image: str) -> None:

        a = np.random.default_rng(1).random(self.large_array_bytes // 8)
        with self.config(runner_name, image):
            r = funcs.cc_sum.run(a=a).wait(300)
        assert r["sum"] == pytest.approx(float(np.sum(a)))
        np.testing.assert_array_equal(r["double"], a * 2)

    # -------------------------------------------------------------- the runner itself
    def test_runner_contract(self, funcs: Any, runner_name: str, image: str, tmp_path: Any) -> None:
        import hither as hi
        from hither.plugins import registry

        cls = registry.load("container_runners", runner_name)
        assert cls.is_available()
        runner = cls()
        with hi.Config(job_handler=ParkedHandler(), container=False):
            job = funcs.cc_sum.run(a=np.ones(4), t=60)  # made here, run below by hand
            quick = funcs.cc_sum.run(a=np.ones(4))
        job_dir = prepare(job, str(tmp_path))
        # timeout: JobTimeoutError, promptly
        t0 = time.monotonic()
        with pytest.raises(JobTimeoutError):
            runner.run(image, job_dir, timeout=2.0)
        assert time.monotonic() - t0 < 30
        # kill from another thread: run returns promptly
        job_dir2 = prepare(job, str(tmp_path))
        threading.Timer(2.0, runner.kill, args=(job_dir2,)).start()
        t0 = time.monotonic()
        code = runner.run(image, job_dir2, timeout=120)
        assert time.monotonic() - t0 < 30 and code != 0
        runner.close()
        # a clean run writes the outcome
        job_dir3 = prepare(quick, str(tmp_path))
        assert runner.run(image, job_dir3, timeout=120) == 0
        outcome = read_job_outputs(job_dir3, 0)
        assert outcome.error is None and outcome.value["sum"] == 4.0
        job.cancel()
        quick.cancel()

