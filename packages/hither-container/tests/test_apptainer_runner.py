"""The Apptainer/Singularity runner. Neither Apptainer nor Singularity can be installed on
this machine (not in Debian's archive), so these tests check the exact command lines the
runner builds and its error paths; where a run is needed, a stand-in ``apptainer``
executable (a shell script, NOT Apptainer) records its arguments and runs the trailing
``python3 runner.py JOB`` with this host's Python. The runner has never run against a real
Apptainer here."""
from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from hither.errors import ContainerError, ContainerImageError, JobTimeoutError
from hither.outside.jobdir import read_job_outputs
from hither.models import ContainerOptions
from hither_container.apptainer_runner import ApptainerRunner, SingularityRunner
from hither_container.jobmount import HITHER_MOUNT, ContainerCrashedError, hither_source

import ct_funcs

pytestmark = pytest.mark.timeout(60)

# The stand-in: logs argv, fails like Apptainer for images named *missing*, else runs the
# command after the image (python3 runner.py JOB) on the host with this test's Python.
STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "{log}"
image=""
while [ $# -gt 0 ]; do
  case "$1" in
    exec|--cleanenv|--containall|--net|--nv) shift ;;
    --pwd|--bind|--network|--memory|--env) shift 2 ;;
    *) image="$1"; shift; break ;;
  esac
done
case "$image" in
  *missing*) echo "FATAL:   Unable to handle $image uri: failed to get checksum" >&2; exit 255 ;;
esac
shift  # python3
exec {python} "$@"
"""


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH holding only the stand-in under the given name (and nothing else)."""
    def install(name="apptainer"):
        d = tmp_path / "bin"
        d.mkdir(exist_ok=True)
        exe = d / name
        exe.write_text(STAND_IN.format(log=tmp_path / "argv.log", python=sys.executable))
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", str(d))
        return str(exe)
    return install


@pytest.fixture
def argv(tmp_path):
    return lambda: (tmp_path / "argv.log").read_text().splitlines()


def test_no_command_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither apptainer nor singularity
    assert ApptainerRunner.is_available() is False
    with pytest.raises(ContainerError, match="neither apptainer nor singularity is on PATH"):
        ApptainerRunner().run("docker://python:3.11", str(tmp_path))
    with pytest.raises(ContainerError, match="configured command /opt/none/apptainer is not on PATH"):
        ApptainerRunner(ContainerOptions(extra={"command": "/opt/none/apptainer"})).build_command(
            "docker://python:3.11", str(tmp_path))


def test_the_command_line(fake_bin, tmp_path):
    exe = fake_bin("apptainer")
    d = str(tmp_path / "job")
    os.makedirs(d)
    o = ContainerOptions(env={"B": "2"}, binds=[f"{tmp_path}:/data:ro"], memory="1g", gpus="all")
    cmd = ApptainerRunner(o).build_command("docker://hither-test/python-numpy:3.11", d)
    assert cmd == [
        exe, "exec", "--cleanenv", "--containall", "--pwd", d,
        "--bind", f"{d}:{d}", "--bind", f"{hither_source()}:{HITHER_MOUNT}/hither:ro",
        "--bind", f"{tmp_path}:/data:ro",
        "--net", "--network", "none",
        "--nv",
        "--memory", "1g",
        "--env", "B=2", "--env", "PYTHONDONTWRITEBYTECODE=1",
        "--env", f"PYTHONPATH={HITHER_MOUNT}", "--env", "PYTHONUNBUFFERED=1",
        "docker://hither-test/python-numpy:3.11",
        "python3", os.path.join(d, "runner.py"), d]


def test_image_urls(fake_bin, tmp_path):
    fake_bin("apptainer")
    r = ApptainerRunner(ContainerOptions(extra={"mount_hither": False, "isolate_network": False}))
    d = str(tmp_path)
    for url in ("docker://python:3.11", "library://sylabs/default/alpine:3.18",
                "oras://ghcr.io/org/img:1", "shub://org/img"):
        cmd = r.build_command(url, d)
        assert cmd[-4] == url and "--net" not in cmd and "PYTHONPATH" not in " ".join(cmd)
    sif = tmp_path / "img.sif"
    sif.write_bytes(b"not really an image")
    assert r.build_command(str(sif), d)[-4] == str(sif)
    assert r.build_command(f"sif://{sif}", d)[-4] == str(sif)
    with pytest.raises(ContainerImageError, match="absent.sif"):
        r.build_command(str(tmp_path / "absent.sif"), d)
    with pytest.raises(ContainerImageError, match="ftp"):
        r.build_command("ftp://host/img", d)


def test_singularity_is_preferred_by_its_runner_and_found_alone(fake_bin, tmp_path):
    exe = fake_bin("singularity")  # only singularity installed
    assert ApptainerRunner(ContainerOptions()).build_command("docker://x:1", str(tmp_path))[0] == exe
    assert SingularityRunner(ContainerOptions()).build_command("docker://x:1", str(tmp_path))[0] == exe
    assert ApptainerRunner.is_available() is False  # the stand-in has no --version: not "answering"


def test_another_user_is_refused(fake_bin, tmp_path):
    fake_bin()
    with pytest.raises(ContainerError, match="calling user"):
        ApptainerRunner(ContainerOptions(user="4321:4321")).build_command("docker://x:1", str(tmp_path))


def test_a_run_through_the_command(fake_bin, argv, job_dir_of):
    fake_bin()
    d = job_dir_of(ct_funcs.add, x=np.arange(3.0), y=1.0)
    code = ApptainerRunner().run("docker://hither-test/python-numpy:3.11", d, timeout=60)
    status, value, error, ri = read_job_outputs(d, code)
    assert code == 0 and error is None
    np.testing.assert_array_equal(value, np.arange(3.0) + 1)
    assert argv()[0] == "exec" and argv()[-3:] == ["python3", os.path.join(d, "runner.py"), d]


def test_error_paths_of_a_run(fake_bin, job_dir_of):
    fake_bin()
    r = ApptainerRunner()
    d = job_dir_of(ct_funcs.ct_noop)
    with pytest.raises(ContainerImageError, match="docker://org/missing:1.*failed to get checksum"):
        r.run("docker://org/missing:1", d, timeout=60)
    d = job_dir_of(ct_funcs.ct_exit, code=5)
    with pytest.raises(ContainerCrashedError, match="exit code 5"):
        r.run("docker://org/img:1", d, timeout=60)
    d = job_dir_of(ct_funcs.ct_sleep, t=60)
    with pytest.raises(JobTimeoutError):
        r.run("docker://org/img:1", d, timeout=1)
