"""ApptainerRunner / SingularityRunner: run job directories with the ``apptainer`` or
``singularity`` command (docker:// images as Apptainer converts them, .sif files, library://,
oras:// and shub:// URLs). Apptainer runs as the calling user by design."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from typing import ClassVar, Dict, List, Optional, Tuple

from hither.errors import JobTimeoutError
from hither.plugins.interfaces import ContainerRunner

from hither.errors import ContainerError, ContainerImageError
from hither.models import ContainerOptions
from .jobmount import calling_user, crashed, has_outcome, job_binds, job_command, job_env, split_image

logger = logging.getLogger("hither_container.apptainer")

PASS_THROUGH = ("docker", "library", "oras", "shub")
#: what Apptainer prints when it cannot get or open an image
_IMAGE_FAILURES = ("unable to handle", "failed to get checksum", "could not open image",
                   "manifest unknown", "not found", "no such file", "failed to pull",
                   "image not found", "unauthorized")


class ApptainerRunner(ContainerRunner):
    """Runs a job directory with ``apptainer exec`` (or ``singularity exec``).

    The command is ``apptainer exec --cleanenv --containall --pwd JOB --bind JOB:JOB
    [--bind hither-core:/opt/hither-core/hither:ro] [--bind ...] [--net --network none]
    [--nv] [--memory M] [--env K=V ...] IMAGE python3 JOB/runner.py JOB``. Example::

        runner = ApptainerRunner()                      # apptainer, else singularity
        code = runner.run("docker://python:3.11", job_dir, timeout=600)
        code = runner.run("/images/analysis.sif", job_dir)

    ``extra`` options: ``command`` (the executable to use), ``isolate_network`` (True: add
    ``--net --network none`` when network is "none"; sites that forbid unprivileged
    networking set False), ``mount_hither`` (True). Errors as ``DockerRunner``.
    """

    name: ClassVar[str] = "apptainer"
    schemes: ClassVar[Tuple[str, ...]] = ("docker", "library", "oras", "shub", "sif")
    commands: ClassVar[Tuple[str, ...]] = ("apptainer", "singularity")

    def __init__(self, options: Optional[ContainerOptions] = None) -> None:
        self.options = options or ContainerOptions()
        self._lock = threading.Lock()
        self._procs: Dict[str, "subprocess.Popen[bytes]"] = {}
        self._killed: set = set()

    @classmethod
    def find_command(cls, configured: Optional[str] = None) -> str:
        """The path of the command to use: ``configured``, else the first of ``commands``
        on PATH; a ``ContainerError`` saying what to install when there is none."""
        for name in ([configured] if configured else list(cls.commands)):
            path = shutil.which(name)
            if path:
                return path
        what = (f"the configured command {configured} is not on PATH" if configured
                else f"neither {' nor '.join(cls.commands)} is on PATH")
        raise ContainerError(
            f"{what}: install Apptainer (https://apptainer.org, or your "
            "site's module) to run library://, oras://, shub:// or .sif images, or use "
            "docker:// images with the Docker runner")

    @classmethod
    def is_available(cls) -> bool:
        try:
            exe = cls.find_command()
        except ContainerError:
            return False
        try:
            return subprocess.run([exe, "--version"], capture_output=True,
                                  timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def image_arg(self, image: str) -> str:
        """What the command gets as the image: URLs pass through, ``sif://PATH`` and paths
        ending in .sif become an absolute path that must exist."""
        scheme, ref = split_image(image)
        if scheme in PASS_THROUGH:
            if not ref:
                raise ContainerImageError(f"{image!r} names no image")
            return f"{scheme}://{ref}"
        if scheme == "sif":
            path = os.path.abspath(os.path.expanduser(ref))
            if not os.path.isfile(path):
                raise ContainerImageError(f"container image {image!r}: {path} is not a file")
            return path
        raise ContainerImageError(f"{self.name} cannot run {image!r}: the image schemes are "
                                  f"{', '.join(self.schemes)}")

    def build_command(self, image: str, job_dir: str) -> List[str]:
        """The full command line that runs ``job_dir`` in ``image`` (tested as is)."""
        o = self.options
        if o.user is not None and o.user != calling_user():
            raise ContainerError(f"{self.name} runs jobs as the calling user ({calling_user()}); "
                                 f"user={o.user!r} is not supported: run hither as that user")
        exe = self.find_command(o.extra.get("command"))
        cmd = [exe, "exec", "--cleanenv", "--containall", "--pwd", job_dir]
        for host, inside, mode in job_binds(job_dir, o):
            cmd += ["--bind", f"{host}:{inside}" + (":ro" if mode == "ro" else "")]
        net = o.network or "none"
        if net == "none":
            if o.extra.get("isolate_network", True):
                cmd += ["--net", "--network", "none"]
        elif net != "host":
            cmd += ["--net", "--network", net]
        if o.gpus is not None:
            cmd.append("--nv")
            if o.gpus not in ("all", -1) and not isinstance(o.gpus, int):
                # --nv exposes every GPU; the visible ones are chosen by CUDA_VISIBLE_DEVICES
                cmd += ["--env", f"CUDA_VISIBLE_DEVICES={o.gpus}"]
        if o.memory:
            cmd += ["--memory", o.memory]
        for k, v in sorted(job_env(o).items()):
            cmd += ["--env", f"{k}={v}"]
        cmd.append(self.image_arg(image))
        return cmd + job_command(job_dir)

    def run(self, image: str, job_dir: str, timeout: Optional[float] = None, **_: object) -> int:
        job_dir = os.path.abspath(str(job_dir))
        cmd = self.build_command(image, job_dir)
        logger.debug("running %s", " ".join(cmd))
        log_path = os.path.join(job_dir, "container.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            with self._lock:
                self._procs[job_dir] = proc
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(proc)
                raise JobTimeoutError(f"job {os.path.basename(job_dir)} in {image} was stopped "
                                      f"after {timeout} s (job_timeout)") from None
            finally:
                with self._lock:
                    self._procs.pop(job_dir, None)
                    killed = job_dir in self._killed
                    self._killed.discard(job_dir)
        if killed:
            return code if code else 128 + signal.SIGKILL
        if has_outcome(job_dir):
            return code
        with open(log_path, encoding="utf-8", errors="replace") as f:
            logs = f.read()
        low = logs.lower()
        if code != 0 and "fatal" in low and any(s in low for s in _IMAGE_FAILURES):
            raise ContainerImageError(f"container image {image!r} could not be used by "
                                      f"{os.path.basename(cmd[0])}: {logs.strip()[-2000:]}")
        oom = code == 128 + signal.SIGKILL and bool(self.options.memory)
        raise crashed(image, job_dir, code, oom, self.options.memory, logs)

    @staticmethod
    def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def kill(self, job_dir: str) -> None:
        """Stop the command running ``job_dir`` (its whole process group)."""
        job_dir = os.path.abspath(str(job_dir))
        with self._lock:
            proc = self._procs.get(job_dir)
            self._killed.add(job_dir)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class SingularityRunner(ApptainerRunner):
    """``ApptainerRunner`` preferring the ``singularity`` command (SingularityCE sites)."""

    name: ClassVar[str] = "singularity"
    commands: ClassVar[Tuple[str, ...]] = ("singularity", "apptainer")


__all__ = ["ApptainerRunner", "SingularityRunner"]
