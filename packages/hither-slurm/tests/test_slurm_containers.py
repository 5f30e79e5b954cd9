"""Container jobs on Slurm pilots: the pilot runs a claimed job directory through the
container runner of the node (hither-container's Docker runner, on the real Docker engine
of scripts/services.sh), on local pilots and in real Slurm batches."""
from __future__ import annotations


import numpy as np
import pytest

import hither as hi
from hither.testing.services import unavailable
import slurm_funcs as sf

pytest.importorskip("hither_container", reason="container jobs need hither-container on the nodes")


@pytest.fixture(scope="module")
def docker_ready():
    from hither_container.docker_runner import DockerRunner

    if not DockerRunner.is_available():
        unavailable("no Docker engine: bash scripts/services.sh docker")
    return True


def test_container_jobs_run_in_the_image_on_pilots(docker_ready, handler, tmp_path):
    host_only = tmp_path / "host-only"
    host_only.mkdir()
    with hi.Config(job_handler=handler, container=True):
        boxed = sf.slurm_in_box.run(a=np.arange(4.0), host_only=str(host_only))
        r = boxed.wait(240)
    assert r == {"in_container": True, "sum": 6.0}
    with hi.Config(job_handler=handler, container=False):  # the same function on the host
        r = sf.slurm_in_box.run(a=np.ones(2), host_only=str(host_only)).wait(240)
    assert r["in_container"] is False


def test_a_missing_image_is_a_clear_job_error(docker_ready, handler):
    with hi.Config(job_handler=handler, container="docker://hither-test/no-such-image:0"):
        job = sf.slurm_add.run(x=1, y=2)
        with pytest.raises(hi.errors.ContainerError, match="no-such-image"):
            job.wait(240)


def test_a_stored_result_goes_into_a_container_job_by_reference(docker_ready, handler, tmp_path):
    """A large result of a host job stays in working_dir/store; the pilot places it in the
    container job's directory (the only folder the container sees), not the client."""
    from hither.values.refs import is_stored

    host_only = tmp_path / "host-only"
    host_only.mkdir()
    n = 200_000  # 1.6 MB: by reference
    with hi.Config(job_handler=handler):
        ramp = sf.slurm_ramp.run(n=n)
        with hi.Config(container=True):
            boxed = sf.slurm_in_box.run(a=ramp, host_only=str(host_only))
        r = boxed.wait(240)
    assert r == {"in_container": True, "sum": float(n * (n - 1) // 2)}
    assert is_stored(ramp._result)
