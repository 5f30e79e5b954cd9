"""Results that stay on the cluster: a SlurmJobHandler's pilots leave large results in the
working folder's store/, the client holds a StoredResult, and the next job on the same
folder gets it by reference (URIs in its job directory), never through the client; unless
hi.Config(download_results=True). Local pilots and real Slurm."""
import json
import os
import shutil

import numpy as np
import pytest

import hither as hi
import hither_slurm.handler as slurm_handler
from hither.errors import HitherError
from hither.values.refs import is_stored

import slurm_funcs as sf

pytestmark = pytest.mark.timeout(120)

#: 50 MB of float64
N = 6_250_000


def _rchar():
    """Bytes this process has read through read() and friends (Linux /proc/self/io)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


class _Spy:
    """Counts reads of a store's content in this process (the real methods still run)."""

    def __init__(self, store):
        self.calls = []
        for name in ("load_array", "get_path", "open"):
            real = getattr(store, name)
            setattr(store, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def spy(*a, **k):
            self.calls.append(name)
            return real(*a, **k)
        return spy


@pytest.fixture
def written_args(monkeypatch):
    """The args.json of every job directory the client writes, as written."""
    seen = {}
    real = slurm_handler.prepare  # core's hither.outside.path.prepare, as the handler calls it

    def prepare(job, job_dir=None, **kw):
        job_dir = real(job, job_dir=job_dir, **kw)
        with open(os.path.join(job_dir, "args.json")) as f:
            seen[job.function_name] = (f.read(), sorted(os.listdir(os.path.join(job_dir, "arrays"))))
        return job_dir

    monkeypatch.setattr(slurm_handler, "prepare", prepare)
    return seen


def test_large_result_goes_to_the_next_job_by_reference(handler, written_args):
    spy = _Spy(handler.result_store)
    before = _rchar()
    with hi.Config(job_handler=handler):
        ramp = sf.slurm_ramp.run(n=N)
        total = sf.slurm_total.run(a=ramp, scale=2)
        out = total.wait(100)
    read = _rchar() - before
    assert out == {"total": float(N * (N - 1)), "n": N, "arrays_here": 0}  # mapped from the store
    # the 50 MB never came into this process: not read, not written into job 2's directory
    assert is_stored(ramp._result), ramp._result
    assert spy.calls == []
    assert read < 10_000_000, f"the client read {read} bytes while a 50 MB result passed by"
    args, arrays = written_args["slurm_total"]
    assert "sha1://" in args and len(args) < 10_000 and arrays == []
    uri = json.loads(args)["a"]["uri"]
    assert os.path.isfile(handler.result_store.get_path(uri))
    # asked for, it is read, from the store
    spy.calls.clear()
    value = ramp.get_result()
    assert isinstance(value, np.ndarray) and value.shape == (N,) and value[-1] == N - 1
    assert np.array_equal(value[:5], np.arange(5.0))
    assert spy.calls[0] == "load_array"
    value[0] = 7.0  # a copy-on-write map: the store keeps its content
    assert handler.result_store.load_array(uri)[0] == 0.0


def test_download_results_brings_values(handler):
    n = 100_000  # 800 kB: above the inline limit, so it would stay in the store
    with hi.Config(job_handler=handler, download_results=True):
        arr = sf.slurm_ramp.run(n=n)
        f = sf.slurm_text.run(text="downloaded")
        total = sf.slurm_total.run(a=arr, scale=1)
        assert arr.wait_done(100) and f.wait_done(100)
        # passed on as a value: the client wrote it into the next job's directory
        assert total.wait(100) == {"total": float(n * (n - 1) // 2), "n": n, "arrays_here": n * 8 + 128}
    assert isinstance(arr._result, np.ndarray) and np.array_equal(arr._result, np.arange(n, dtype=float))
    assert isinstance(f._result, hi.File)
    with open(f._result) as fh:
        assert fh.read() == "downloaded"
    # without it the same result stays a reference; small values come back as values
    with hi.Config(job_handler=handler):
        kept = sf.slurm_ramp.run(n=n)
        small = sf.slurm_ramp.run(n=10)
        assert kept.wait_done(100) and small.wait_done(100)
    assert is_stored(kept._result) and not is_stored(small._result)
    assert np.array_equal(kept.get_result(), np.arange(n, dtype=float))


def test_file_results_pass_by_reference(handler, written_args):
    with hi.Config(job_handler=handler):
        made = sf.slurm_text.run(text="hello", big=1000)
        copied = sf.slurm_file_copy.run(f=made)
        assert copied.wait_done(100)
    assert is_stored(made._result) and is_stored(copied._result)
    args, _ = written_args["slurm_file_copy"]
    node = json.loads(args)["f"]
    assert node["uri"].startswith("sha1://") and not node.get("local")
    result = copied.get_result()
    assert isinstance(result, hi.File)
    with open(result) as fh:
        assert fh.read() == "hello" + "x" * 1000 + "!"
    assert os.path.realpath(os.fspath(result)).startswith(os.path.realpath(handler.result_store.root))


def test_results_outlive_the_handler_and_a_cache_keeps_values(mode, tmp_path):
    """A handler started again on the same working folder (a restarted program) reads and
    passes on the results the first one left; a job cache holds values (a StoredResult is
    read before it is recorded), so a hit still works once the store is gone."""
    pytest.importorskip("hither_cache", reason="the job cache of this test is in hither-cache")
    work = str(tmp_path / "work")
    cache = hi.JobCache(path=str(tmp_path / "cache"))
    kw = dict(working_dir=work, use_slurm=(mode == "slurm"), num_workers_per_batch=2,
              num_cores_per_job=1, idle_timeout=5)
    n = 100_000
    first = hi.SlurmJobHandler(**kw)
    with hi.Config(job_handler=first):
        ramp = sf.slurm_ramp.run(n=n)
        assert ramp.wait_done(100)
    first.shutdown()
    assert is_stored(ramp._result)
    second = hi.SlurmJobHandler(**kw)
    try:
        with hi.Config(job_handler=second):
            total = sf.slurm_total.run(a=ramp, scale=1)
            assert total.wait(100) == {"total": float(n * (n - 1) // 2), "n": n, "arrays_here": 0}
        assert is_stored(ramp._result)  # went by reference to the new handler's job
        with hi.Config(job_handler=second, job_cache=cache):
            cached = sf.slurm_ramp.run(n=n + 1)
            assert cached.wait_done(100)
        assert is_stored(cached._result)
    finally:
        second.shutdown()
    shutil.rmtree(os.path.join(work, "store"))
    third = hi.SlurmJobHandler(**kw)
    try:
        with hi.Config(job_handler=third, job_cache=cache):
            again = sf.slurm_ramp.run(n=n + 1)
            value = again.wait(100)
        assert again.from_cache and not third.batches()
        assert np.array_equal(value, np.arange(n + 1, dtype=float))
    finally:
        third.shutdown()


def test_a_stored_argument_gone_from_the_store_is_a_clear_error(make_handler):
    jh = make_handler(use_slurm=False)
    with hi.Config(job_handler=jh):
        ramp = sf.slurm_ramp.run(n=100_000)
        assert ramp.wait_done(60)
        shutil.rmtree(jh.result_store.root)
        total = sf.slurm_total.run(a=ramp, scale=1)
        with pytest.raises(Exception, match="could not be read") as err:
            total.wait(60)
    assert jh.result_store.root in str(err.value)


@pytest.mark.timeout(90)
def test_a_store_that_cannot_take_a_result_fails_the_job_clearly(handler):
    """The pilot cannot put a large result into working_dir/store (a regular file stands where
    the folder should be; a full disk fails the same way): the job ends with an error naming
    the store, at once; not a hang, and not the value read from the job directory instead.
    The pilot goes on running jobs that need no store."""
    store = handler.result_store.root
    with hi.Config(job_handler=handler):
        assert sf.slurm_add.run(x=1, y=2).wait(60) == 3  # a pilot is up
        shutil.rmtree(store, ignore_errors=True)
        with open(store, "w") as f:
            f.write("not a folder")
        big = sf.slurm_ramp.run(n=100_000)  # 800 kB: above the inline limit, so for the store
        with pytest.raises(HitherError, match="could not be put into the store") as err:
            big.wait(60)
        small = sf.slurm_ramp.run(n=10)  # goes back inline
        assert small.wait(60).tolist() == list(range(10))
    msg = str(err.value)
    assert store in msg and "slurm_ramp" in msg and "NotADirectoryError" in msg, msg
    assert big.get_runtime_info().batch, "the error should say which batch ran the job"
