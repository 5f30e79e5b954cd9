"""Conformance tests every ``hither.plugins.interfaces.ContainerRunner`` must pass (needs pytest).

A runner's test module subclasses :class:`ContainerRunnerConformance` and provides three
fixtures: ``make_runner`` (``ContainerOptions -> runner``: a runner of the implementation
under test; the suite closes each one), ``image`` (an image URL with Python >= 3.8 and
numpy) and ``leftover_containers`` (a callable listing this process's containers still
present: must be empty after every run). Example::

    from hither_container.testing import ContainerRunnerConformance

    class TestDockerConformance(ContainerRunnerConformance):
        @pytest.fixture
        def make_runner(self):
            return lambda options: DockerRunner(options)

It writes real job directories (``hither.outside.path.prepare``, see ``job_dirs``) of real jobs, runs them
with the runner and reads them back (``hither.outside.jobdir.read_job_outputs``): results with
arrays and console output, errors with tracebacks, running inside the image (the host's
files unseen), the caller's uid, timeout, crash, out-of-memory kill, cancel within
``kill_within`` seconds, hi.File in and out, a large array through the job folder, and no
container left behind. Class attributes: ``kill_within`` (1.0 s), ``supports_memory_limit``,
``large_array_mb`` (64).
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator, List

import numpy as np
import pytest

import hither as hi
from hither.errors import JobCancelledException, JobTimeoutError, WorkerDiedError
from hither.outside.jobdir import read_job_outputs
from hither.outside.path import prepare
from hither.status import JobStatus
from hither.testing.container_conformance import ParkedHandler

from hither.errors import ContainerError
from hither.models import ContainerOptions

FUNCS = '''
"""Functions of the ContainerRunner conformance suite (written here by the suite)."""
import os
import sys
import time

import numpy as np
import hither as hi


@hi.function('cf_stats', '0.1.0')
def cf_stats(a, scale=1.0):
    print('stats of', a.shape)
    sys.stderr.write('a line to stderr\\n')
    return {'sum': float(np.sum(a)), 'scaled': a * scale, 'uid': os.getuid(),
            'gid': os.getgid(), 'cwd': os.getcwd(), 'n': np.int64(a.size)}


@hi.function('cf_fail', '0.1.0')
def cf_fail(msg):
    raise ValueError(msg)


@hi.function('cf_sleep', '0.1.0')
def cf_sleep(t):
    open('started', 'w').close()
    time.sleep(t)
    return t


@hi.function('cf_exit', '0.1.0')
def cf_exit(code):
    print('about to exit', flush=True)
    os._exit(code)


@hi.function('cf_hog', '0.1.0')
def cf_hog(mb):
    chunks = []
    for _ in range(mb):
        chunks.append(b'x' * (1024 * 1024))
    return len(chunks)


@hi.function('cf_probe', '0.1.0')
def cf_probe(paths):
    with open('/etc/os-release') as f:
        os_release = f.read()
    return {'seen': {p: os.path.exists(p) for p in paths}, 'os_release': os_release,
            'python': sys.version_info[:2], 'stand_in': bool(getattr(hi, '__hither_stand_in__', False)),
            'hither_file': getattr(hi, '__file__', None)}


@hi.function('cf_file_io', '0.1.0')
def cf_file_io(f, text):
    with open(f) as fh:
        first = fh.read()
    with open('written-inside.txt', 'w') as fh:
        fh.write(first + text)
    return hi.File('written-inside.txt')


@hi.function('cf_double', '0.1.0')
def cf_double(a):
    return a * 2
'''


def job_dirs(tmp_path: Any, monkeypatch: Any) -> Iterator[Callable[..., str]]:
    """The body of the ``job_dir_of`` fixtures (this suite's, and hither-container's own
    tests' in their conftest): ``job_dir_of(fn, **kwargs)`` makes a real Job of
    ``fn(**kwargs)`` that never runs here (``hither.testing``'s ``ParkedHandler``), writes it
    with ``hither.outside.path.prepare`` into a fresh folder under ``tmp_path/jobs`` and returns
    that job directory, for the runner under test to run by hand. The jobs are cancelled at
    the end. Example::

        @pytest.fixture
        def job_dir_of(tmp_path, monkeypatch):
            yield from job_dirs(tmp_path, monkeypatch)
    """
    monkeypatch.setenv("HITHER_RESULTS_DIR", str(tmp_path / "results"))
    handler = ParkedHandler()
    jobs: List[Any] = []
    base = tmp_path / "jobs"
    base.mkdir()

    def make(fn: Any, **kwargs: Any) -> str:
        # container=False: the runner under test is given the image; .run() chooses none
        with hi.Config(job_handler=handler, container=False):
            job = fn.run(**kwargs)
        jobs.append(job)
        return prepare(job, job_dir=str(base / f"job-{len(jobs)}"))

    try:
        yield make
    finally:
        for j in jobs:
            j.cancel()


@pytest.mark.filterwarnings("ignore:hither function name .* is registered twice")
class ContainerRunnerConformance:
    """The ContainerRunner contract; see the module docstring."""

    kill_within = 1.0
    supports_memory_limit = True
    large_array_mb = 64

    # ---------------------------------------------------------------- fixtures
    @pytest.fixture
    def cfuncs(self, tmp_path_factory: Any) -> Iterator[Any]:
        d = tmp_path_factory.mktemp("cf_mod")
        with open(os.path.join(str(d), "hither_cf_funcs.py"), "w") as f:
            f.write(FUNCS)
        sys.path.insert(0, str(d))
        sys.modules.pop("hither_cf_funcs", None)
        try:
            yield importlib.import_module("hither_cf_funcs")
        finally:
            sys.path.remove(str(d))
            sys.modules.pop("hither_cf_funcs", None)

    @pytest.fixture
    def runner_of(self, make_runner: Callable[[ContainerOptions], Any]) -> Iterator[Any]:
        made: List[Any] = []

        def of(**options: Any) -> Any:
            r = make_runner(ContainerOptions(**options))
            made.append(r)
            return r

        yield of
        for r in made:
            r.close()

    @pytest.fixture
    def job_dir_of(self, tmp_path: Any, monkeypatch: Any) -> Iterator[Callable[..., str]]:
        """``job_dir_of(fn, **kwargs)``: a fresh job directory of ``fn(**kwargs)``."""
        yield from job_dirs(tmp_path, monkeypatch)

    # leftovers are checked after close(): a runner may keep warm containers until then;
    # a timed-out, crashed or cancelled job must not need close() to be cleaned up
    @staticmethod
    def outcome(job_dir: str, code: int) -> Any:
        status, value, error, ri = read_job_outputs(job_dir, code)
        return status, value, error, ri

    # ---------------------------------------------------------------- the contract
    @pytest.mark.timeout(120)
    def test_result_arrays_and_console(self, runner_of, image, cfuncs, job_dir_of,
                                       leftover_containers):
        d = job_dir_of(cfuncs.cf_stats, a=np.arange(6.0).reshape(2, 3), scale=1.5)
        runner = runner_of()
        code = runner.run(image, d, timeout=120)
        runner.close()
        status, value, error, ri = self.outcome(d, code)
        assert code == 0 and error is None and status == JobStatus.FINISHED
        assert value["sum"] == 15.0 and value["n"] == 6 and isinstance(value["n"], np.int64)
        np.testing.assert_array_equal(value["scaled"], np.arange(6.0).reshape(2, 3) * 1.5)
        assert "stats of (2, 3)" in ri["stdout"] and "a line to stderr" in ri["stderr"]
        # the job's own folder (a runner may mount it elsewhere while it runs)
        assert os.path.basename(value["cwd"]) == os.path.basename(d)
        assert leftover_containers() == []

    @pytest.mark.timeout(120)
    def test_runs_as_the_calling_user(self, runner_of, image, cfuncs, job_dir_of):
        d = job_dir_of(cfuncs.cf_stats, a=np.ones(2))
        value = self.outcome(d, runner_of().run(image, d, timeout=120))[1]
        assert (value["uid"], value["gid"]) == (os.getuid(), os.getgid())

    @pytest.mark.timeout(120)
    def test_error_keeps_its_type_and_traceback(self, runner_of, image, cfuncs, job_dir_of,
                                                leftover_containers):
        d = job_dir_of(cfuncs.cf_fail, msg="broken on purpose")
        runner = runner_of()
        code = runner.run(image, d, timeout=120)
        runner.close()
        status, value, error, ri = self.outcome(d, code)
        assert status == JobStatus.ERROR and isinstance(error, ValueError)
        assert "broken on purpose" in str(error)
        assert "cf_fail" in error.remote_traceback  # the traceback from inside
        assert leftover_containers() == []

    @pytest.mark.timeout(120)
    def test_runs_inside_the_image(self, runner_of, image, cfuncs, job_dir_of, tmp_path):
        marker = tmp_path / "host-only-marker"
        marker.write_text("only on the host")
        d = job_dir_of(cfuncs.cf_probe, paths=[str(marker), d_placeholder()])
        value = self.outcome(d, runner_of().run(image, d, timeout=120))[1]
        assert value["seen"] == {str(marker): False, d_placeholder(): False}
        assert "ID=" in value["os_release"]

    @pytest.mark.timeout(60)
    def test_timeout_stops_the_container(self, runner_of, image, cfuncs, job_dir_of,
                                         leftover_containers):
        d = job_dir_of(cfuncs.cf_sleep, t=120)
        t0 = time.monotonic()
        with pytest.raises(JobTimeoutError, match="1.5"):
            runner_of().run(image, d, timeout=1.5)
        assert time.monotonic() - t0 < 1.5 + 10
        assert leftover_containers() == []

    @pytest.mark.timeout(120)
    def test_crash_is_a_clear_error(self, runner_of, image, cfuncs, job_dir_of,
                                    leftover_containers):
        d = job_dir_of(cfuncs.cf_exit, code=7)
        with pytest.raises((ContainerError, WorkerDiedError), match="exit code 7") as info:
            code = runner_of().run(image, d, timeout=120)
            # a runner may also return the code; core then reports the job's process died
            raise self.outcome(d, code)[2]
        assert "out-of-memory" not in str(info.value)
        assert leftover_containers() == []

    @pytest.mark.timeout(120)
    def test_oom_kill_says_so(self, runner_of, image, cfuncs, job_dir_of, leftover_containers):
        if not self.supports_memory_limit:
            pytest.skip("this runner does not limit memory")
        d = job_dir_of(cfuncs.cf_hog, mb=1024)
        with pytest.raises(ContainerError, match="out-of-memory") as info:
            runner_of(memory="96m").run(image, d, timeout=120)
        assert "96m" in str(info.value)
        assert leftover_containers() == []

    @pytest.mark.timeout(60)
    def test_cancel_stops_it_at_once(self, runner_of, image, cfuncs, job_dir_of,
                                     leftover_containers):
        runner = runner_of()
        d = job_dir_of(cfuncs.cf_sleep, t=120)
        outcome: List[Any] = []

        def go() -> None:
            try:
                outcome.append(runner.run(image, d, timeout=120))
            except BaseException as exc:  # noqa: BLE001 - inspected below
                outcome.append(exc)

        th = threading.Thread(target=go, daemon=True)
        th.start()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(d, "started")):
            assert time.monotonic() < deadline and th.is_alive(), f"never started: {outcome}"
            time.sleep(0.02)
        t0 = time.monotonic()
        runner.kill(d)
        th.join(30)
        took = time.monotonic() - t0
        assert not th.is_alive()
        assert took < self.kill_within, f"kill took {took:.2f} s"
        # run returns a non-zero code (core's contract) or raises a cancel/container error
        assert len(outcome) == 1 and (isinstance(outcome[0], (JobCancelledException, ContainerError))
                                      or (isinstance(outcome[0], int) and outcome[0] != 0))
        assert not os.path.exists(os.path.join(d, "result.json"))
        deadline = time.monotonic() + 10
        while leftover_containers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftover_containers() == []

    @pytest.mark.timeout(120)
    def test_files_in_and_out(self, runner_of, image, cfuncs, job_dir_of, tmp_path):
        src = tmp_path / "input.txt"
        src.write_text("from the host;")
        d = job_dir_of(cfuncs.cf_file_io, f=hi.File(str(src)), text="written inside")
        written = os.path.join(d, "written-inside.txt")
        code = runner_of().run(image, d, timeout=120)
        assert os.stat(written).st_uid == os.getuid()  # the caller's, not the container's
        status, value, error, ri = self.outcome(d, code)
        assert error is None, error
        assert isinstance(value, hi.File)
        with open(value.resolve()) as f:
            assert f.read() == "from the host;written inside"

    @pytest.mark.timeout(180)
    def test_large_array_through_the_job_folder(self, runner_of, image, cfuncs, job_dir_of):
        n = self.large_array_mb * 1024 * 1024 // 8
        a = np.random.default_rng(0).standard_normal(n)
        d = job_dir_of(cfuncs.cf_double, a=a)
        value = self.outcome(d, runner_of().run(image, d, timeout=180))[1]
        assert value.shape == a.shape and np.array_equal(value, a * 2)

    @pytest.mark.timeout(180)
    def test_no_container_left_after_a_mix(self, runner_of, image, cfuncs, job_dir_of,
                                           leftover_containers):
        runner = runner_of()
        for fn, kw in ((cfuncs.cf_stats, {"a": np.ones(2)}), (cfuncs.cf_fail, {"msg": "x"}),
                       (cfuncs.cf_exit, {"code": 3})):
            d = job_dir_of(fn, **kw)
            try:
                runner.run(image, d, timeout=120)
            except ContainerError:
                pass
        runner.close()
        assert leftover_containers() == []


def d_placeholder() -> str:
    """A path of this host's that an image does not have (the project's work tree)."""
    return os.path.dirname(os.path.abspath(__file__))
