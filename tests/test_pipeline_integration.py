"""A realistic pipeline across handlers with a real file job cache (hither-cache): results
match a direct computation, a second run is served entirely from the cache, and a worker
that dies mid-pipeline fails exactly its downstream jobs without a hang."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import hither as hi

sys.path.insert(0, os.path.dirname(__file__))
import pipeline_funcs as pf  # noqa: E402

pytest.importorskip("hither_cache")


@pytest.fixture(autouse=True)
def _reset():
    yield
    hi.reset()


def build(jh):
    """40 blocks -> 20 pairwise means (in worker processes) -> 4 reductions (in process)."""
    with hi.Config(job_handler=jh):
        blocks = [pf.make_block.run(seed=s, n=5000) for s in range(40)]
        pairs = [pf.combine.run(a=blocks[2 * i], b=blocks[2 * i + 1]) for i in range(20)]
    stats = [pf.reduce_stats.run(blocks=pairs[5 * k:5 * k + 5]) for k in range(4)]
    return blocks, pairs, stats


def expected_stats():
    blocks = [pf.make_block(seed=s, n=5000) for s in range(40)]
    pairs = [pf.combine(a=blocks[2 * i], b=blocks[2 * i + 1]) for i in range(20)]
    return [pf.reduce_stats(blocks=pairs[5 * k:5 * k + 5]) for k in range(4)]


def test_pipeline_matches_direct_computation_and_reruns_from_cache(tmp_path):
    jc = hi.JobCache(path=str(tmp_path / "jc"))
    want = expected_stats()
    with hi.Config(job_cache=jc):
        blocks, pairs, stats = build(hi.ParallelJobHandler(num_workers=2))
        got = [s.wait(120) for s in stats]
    for g, w in zip(got, want):
        assert g["shape"] == w["shape"] == (5, 5000) and type(g["shape"]) is tuple
        assert g["mean"] == pytest.approx(w["mean"]) and g["std"] == pytest.approx(w["std"])
    assert not any(j.get_runtime_info().cached for j in blocks + pairs + stats)
    hi.reset()

    with hi.Config(job_cache=jc):
        blocks2, pairs2, stats2 = build(hi.ParallelJobHandler(num_workers=2))
        again = [s.wait(120) for s in stats2]
    assert again == got
    assert all(j.get_runtime_info().cached for j in blocks2 + pairs2 + stats2), \
        "a second run of the same pipeline must be served by the cache"
    with hi.Config(job_cache=jc, force_run=True):  # cached, but run again on request
        rerun = pf.make_block.run(seed=0, n=5000)
        np.testing.assert_array_equal(rerun.wait(60), blocks[0].get_result())
        assert not rerun.get_runtime_info().cached


def test_worker_death_mid_pipeline_fails_only_downstream(tmp_path):
    jh = hi.ParallelJobHandler(num_workers=2)
    with hi.Config(job_handler=jh):
        ok = [pf.crash_if.run(x=np.full(3, i), crash=False) for i in range(6)]
        bad = pf.crash_if.run(x=np.zeros(3), crash=True)
        after_ok = [pf.combine.run(a=j, b=j) for j in ok]
        after_bad = pf.combine.run(a=bad, b=ok[0])
        after_after_bad = pf.combine.run(a=after_bad, b=ok[1])
    hi.wait(120)  # returns: nothing hangs
    for i, j in enumerate(after_ok):
        np.testing.assert_array_equal(j.get_result(), np.full(3, i))
    with pytest.raises(hi.WorkerDiedError, match="code 9"):
        bad.get_result()
    for j in (after_bad, after_after_bad):
        with pytest.raises(hi.DependencyFailedError):
            j.get_result()
    # and the handler is still good for new work
    with hi.Config(job_handler=jh):
        assert pf.combine.run(a=np.ones(2), b=np.ones(2)).wait(60).tolist() == [1.0, 1.0]
