"""Fixtures of hither-slurm's tests: handlers on a real single-node Slurm (and local pilots).

Slurm comes from ``bash scripts/services.sh slurm``. Without it the Slurm tests skip, or
fail when ``HITHER_REQUIRE_SERVICES=1``. At the end of the session no batch of these tests
may be left in ``squeue``.
"""
import os
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import hither as hi  # noqa: E402
from hither.testing.services import unavailable  # noqa: E402
from hither_slurm.batches import JOB_NAME_PREFIX, slurm_available  # noqa: E402


@pytest.fixture(scope="session")
def slurm():
    why = slurm_available()
    if why is not None:
        unavailable(f"no Slurm here ({why}); start one with: bash scripts/services.sh slurm")
    return True


def _our_batches(base):
    """Slurm jobs whose batch script lies under ``base`` (this session's working folders)."""
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%o"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines()
            if JOB_NAME_PREFIX in line and str(base) in line]


@pytest.fixture(scope="session", autouse=True)
def _no_batch_outlives_the_session(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    yield
    hi.reset()
    import time

    deadline = time.monotonic() + 20  # scancel'ed batches leave squeue within seconds
    left = _our_batches(base)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _our_batches(base)
    assert not left, f"Slurm batches of the tests are still in squeue: {left}"


@pytest.fixture(autouse=True)
def _hither_reset():
    yield
    hi.reset()


@pytest.fixture
def make_handler(tmp_path):
    """Factory of SlurmJobHandlers in this test's working folder, shut down at the end."""
    made = []

    def make(use_slurm=True, **kw):
        kw.setdefault("num_workers_per_batch", 2)
        kw.setdefault("num_cores_per_job", 1)
        kw.setdefault("idle_timeout", 5)
        h = hi.SlurmJobHandler(working_dir=str(tmp_path / f"work{len(made)}"), use_slurm=use_slurm, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.shutdown(wait=True)


@pytest.fixture(params=["local", "slurm"])
def mode(request):
    """Each way of running pilots: local processes, and Slurm batches."""
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return request.param


@pytest.fixture
def handler(mode, make_handler):
    return make_handler(use_slurm=(mode == "slurm"))
