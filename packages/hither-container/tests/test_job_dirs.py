"""The one job-directory fixture of hither-container's tests (``hither_container.testing.
job_dirs``, used by the conformance suite and by the Docker and Apptainer tests): a real Job
that never ran here, written by ``hither.outside.path.prepare`` into a directory the runner (here:
this host's Python, no container) runs by hand, and cancelled at the end of the test."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import hither as hi
from hither.outside.jobdir import read_job_outputs
from hither_container.testing import job_dirs  # noqa: F401 - the one fixture body

import ct_funcs

pytestmark = pytest.mark.timeout(60)


def test_a_job_dir_of_a_job_that_never_ran_here(job_dir_of, tmp_path):
    d = job_dir_of(ct_funcs.ct_touch, name="here.txt")
    assert os.path.dirname(d) == str(tmp_path / "jobs")
    assert {"spec.json", "args.json", "code.zip", "runner.py"} <= set(os.listdir(d))
    assert not os.path.exists(os.path.join(d, "here.txt")) and not os.path.exists("here.txt")
    proc = subprocess.run([sys.executable, "-I", os.path.join(d, "runner.py"), d], cwd=d,
                          capture_output=True, text=True, timeout=60)
    status, value, error, ri = read_job_outputs(d, proc.returncode)
    assert error is None, (error, proc.stderr)
    assert status == hi.JobStatus.FINISHED and "here.txt" in value

