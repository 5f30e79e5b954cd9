"""Conformance tests every ``hither.plugins.interfaces.JobHandler`` must pass (needs pytest).

A handler's test module subclasses :class:`JobHandlerConformance` and provides the fixture
``handler``: a fresh handler (the suite shuts it down). Class attributes say what the
handler promises: ``cancels_running`` (a running job can be stopped), ``supports_timeout``
(``hi.Config(job_timeout=...)`` stops a job), ``max_seconds`` (a bound on any one wait).
The job functions live in a module the suite writes to a temporary folder, so handlers that
run jobs from code bundles (containers, pilots, other machines) can run them. Example::

    from hither.testing.handler_conformance import JobHandlerConformance

    class TestSlurmConformance(JobHandlerConformance):
        supports_timeout = True

        @pytest.fixture
        def handler(self, tmp_path):
            return hi.SlurmJobHandler(working_dir=str(tmp_path), use_slurm=False)
"""
from __future__ import annotations

import time
from typing import Any, Iterator

from hither.testing._modules import job_module

import numpy as np
import pytest

from hither.errors import DependencyFailedError, JobCancelledException, JobTimeoutError

JOB_FUNCS = '''
import os
import time
import numpy as np
import hither as hi


@hi.function('hc_add', '0.1.0')
def hc_add(x, y):
    return x + y


@hi.function('hc_stats', '0.1.0')
def hc_stats(a, label):
    print("stats of", label)
    return {'label': label, 'mean': float(np.mean(a)), 'scaled': a * 3, 'shape': tuple(a.shape)}


@hi.function('hc_fail', '0.1.0')
def hc_fail(msg):
    raise KeyError(msg)


@hi.function('hc_sleep', '0.1.0')
def hc_sleep(t, x=0):
    time.sleep(t)
    return x


@hi.function('hc_read', '0.1.0')
def hc_read(f):
    with open(f) as fh:
        return fh.read()


@hi.function('hc_write', '0.1.0')
def hc_write(text):
    with open('hc_out.txt', 'w') as fh:
        fh.write(text)
    return hi.File('hc_out.txt')
'''


class JobHandlerConformance:
    """The behaviour every job handler must show (see the module docstring)."""

    cancels_running = True
    supports_timeout = True
    max_seconds = 120.0

    @pytest.fixture
    def funcs(self, tmp_path: Any, monkeypatch: Any) -> Any:
        monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "jobs"))
        return job_module("hc_funcs", JOB_FUNCS)

    @pytest.fixture
    def jh(self, handler: Any) -> Iterator[Any]:
        yield handler
        handler.shutdown()

    def _wait_running(self, job: Any) -> None:
        deadline = time.monotonic() + self.max_seconds
        while job.get_status().value not in ("running", "finished", "error", "cancelled"):
            assert time.monotonic() < deadline, f"{job} never started"
            time.sleep(0.02)

    # ------------------------------------------------------------------ results
    def test_results_arrays_and_console(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        with hi.Config(job_handler=jh):
            j = funcs.hc_stats.run(a=a, label="m")
            r = j.wait(self.max_seconds)
        assert r["label"] == "m" and r["mean"] == pytest.approx(5.5) and r["shape"] == (3, 4)
        assert r["scaled"].dtype == np.float32
        np.testing.assert_array_equal(r["scaled"], a * 3)
        assert "stats of m" in j.get_runtime_info().stdout
        assert j.get_status() == hi.JobStatus.FINISHED

    def test_errors_keep_their_type_and_traceback(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        with hi.Config(job_handler=jh):
            j = funcs.hc_fail.run(msg="missing thing")
            with pytest.raises(KeyError, match="missing thing"):
                j.wait(self.max_seconds)
        assert j.get_status() == hi.JobStatus.ERROR
        assert "hc_fail" in (getattr(j.get_error(), "remote_traceback", "") or "")

    def test_pipeline_on_this_handler_and_across_handlers(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        with hi.Config(job_handler=jh):
            a = funcs.hc_add.run(x=1, y=2)
            b = funcs.hc_add.run(x=a, y=10)
        c = funcs.hc_add.run(x=b, y=100)  # on the default handler
        with hi.Config(job_handler=jh):
            d = funcs.hc_add.run(x=c, y=1000)
        assert d.wait(self.max_seconds) == 1113

    def test_a_failed_input_fails_its_consumers(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        with hi.Config(job_handler=jh):
            bad = funcs.hc_fail.run(msg="upstream")
            down = funcs.hc_add.run(x=bad, y=1)
            with pytest.raises(DependencyFailedError, match="upstream"):
                down.wait(self.max_seconds)

    @pytest.mark.slow
    def test_many_jobs_none_lost(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        with hi.Config(job_handler=jh):
            jobs = [funcs.hc_add.run(x=i, y=i) for i in range(40)]
        assert [j.wait(self.max_seconds) for j in jobs] == [2 * i for i in range(40)]

    def test_files_in_and_out(self, funcs: Any, jh: Any, tmp_path: Any, monkeypatch: Any) -> None:
        import hither as hi

        # an in-process handler writes hc_out.txt in the current folder: keep it out of the repo
        monkeypatch.chdir(tmp_path)
        src = tmp_path / "input.txt"
        src.write_text("file content")
        with hi.Config(job_handler=jh):
            assert funcs.hc_read.run(f=hi.File(str(src))).wait(self.max_seconds) == "file content"
            out = funcs.hc_write.run(text="written by the job").wait(self.max_seconds)
        assert isinstance(out, hi.File)
        with open(out) as fh:
            assert fh.read() == "written by the job"

    # ------------------------------------------------------------------ control
    def test_cancel_a_running_job(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        if not self.cancels_running:
            pytest.skip("this handler does not promise to stop a running job")
        with hi.Config(job_handler=jh):
            j = funcs.hc_sleep.run(t=300)
            self._wait_running(j)
            t0 = time.monotonic()
            assert j.cancel()
            with pytest.raises(JobCancelledException):
                j.wait(30)
            assert time.monotonic() - t0 < 30
            assert funcs.hc_add.run(x=2, y=3).wait(self.max_seconds) == 5  # the handler goes on

    def test_timeout_stops_a_job(self, funcs: Any, jh: Any) -> None:
        import hither as hi

        if not self.supports_timeout:
            pytest.skip("this handler does not enforce job_timeout")
        with hi.Config(job_handler=jh, job_timeout=1.0):
            j = funcs.hc_sleep.run(t=300)
            t0 = time.monotonic()
            with pytest.raises(JobTimeoutError):
                j.wait(self.max_seconds)
        assert time.monotonic() - t0 < 60

    def test_shutdown_ends_every_job(self, funcs: Any, handler: Any) -> None:
        import hither as hi

        if not self.cancels_running:
            pytest.skip("this handler cannot stop running jobs, so shutdown waits for them")
        with hi.Config(job_handler=handler):
            jobs = [funcs.hc_sleep.run(t=0.2 if i == 0 else 300, x=i) for i in range(3)]
        time.sleep(0.5)
        handler.shutdown(wait=True)
        for j in jobs:
            assert j.wait_done(30), f"{j} still running after shutdown"
