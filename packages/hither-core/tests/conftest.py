"""Fixtures of the hither-core tests.

pytest runs with ``--import-mode=importlib``, so this directory is put on ``sys.path`` for
the helper module ``core_funcs`` (hither functions defined at module level, importable by
ParallelJobHandler workers, which receive the parent's ``sys.path``).
"""
import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import hither as hi  # noqa: E402


@pytest.fixture(autouse=True)
def _hither_reset():
    yield
    hi.reset()


@pytest.fixture
def make_pjh():
    """Factory of ParallelJobHandlers, each shut down at the end of the test (also the ones
    that never got a job, which ``hi.reset()`` does not know about)."""
    made = []

    def make(num_workers=2):
        h = hi.ParallelJobHandler(num_workers=num_workers)
        made.append(h)
        return h

    yield make
    for h in made:
        h.shutdown(wait=False)


@pytest.fixture(params=["default", "parallel"])
def handler(request, make_pjh):
    """Each handler in turn: None means the process-wide DefaultJobHandler."""
    if request.param == "default":
        return None
    return make_pjh(2)
