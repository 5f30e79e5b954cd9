"""DockerRunner: runs job directories in Docker containers through the Engine API
(docker-py; the docker CLI is not needed). One container per job, or warm containers
reused across jobs with ``ContainerOptions(reuse=True)`` (see ``hither_container.warm``)."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Set, Tuple

from hither.errors import JobTimeoutError
from hither.plugins.interfaces import ContainerRunner

from hither.errors import ContainerError, ContainerImageError
from hither.models import ContainerOptions
from .jobmount import (LABEL_JOB, LABEL_KIND, LABEL_OWNER_HOST, LABEL_OWNER_PID, crashed,
                       describe_exit, has_outcome, job_binds, job_command,
                       split_image)
from .engine import (check_raw_arguments, create_kwargs, engine_error, is_connection_error,
                     remove_quietly)
from .lifeline_host import attach_lifeline, close_lifeline, lifeline_command, wants_lifeline

if TYPE_CHECKING:  # pragma: no cover
    import docker

logger = logging.getLogger("hither_container.docker")

#: an image that could not be found or pulled: ref -> (time, message); not retried for
#: BAD_IMAGE_TTL seconds, so a batch of jobs fails at once instead of pulling per job
_bad_images: Dict[str, Tuple[float, str]] = {}
BAD_IMAGE_TTL = 60.0
_known_images: Set[str] = set()
_image_lock = threading.Lock()
_swept = False
#: what ``run`` returns for a job stopped by ``kill`` (the code of a SIGKILLed process)
KILLED = 137
_sweep_lock = threading.Lock()


def client() -> "docker.DockerClient":
    """A docker-py client for ``$DOCKER_HOST`` (default: the local socket), checked alive;
    a ``ContainerError`` that says how to start the engine when it does not answer."""
    import docker

    try:
        c = docker.from_env(timeout=30)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises several kinds here
        raise engine_error(exc, "no Docker Engine") from exc
    return c


def docker_ref(image: str) -> str:
    """The Docker reference of an image URL (``docker://repo:tag`` or ``repo:tag``)."""
    scheme, ref = split_image(image)
    if scheme != "docker":
        raise ContainerImageError(f"the Docker runner runs docker:// images, not {image!r} "
                                  "(library://, oras://, shub:// and .sif need Apptainer)")
    if not ref:
        raise ContainerImageError(f"{image!r} names no image")
    return ref


def ensure_image(c: "docker.DockerClient", ref: str, pull: str = "missing") -> None:
    """Use the local image ``ref``, else pull it (``pull="never"``: never). A missing or
    unpullable image is a ``ContainerImageError`` naming it, remembered for a while."""
    import docker

    with _image_lock:
        if ref in _known_images:
            return
        bad = _bad_images.get(ref)
        if bad and time.monotonic() - bad[0] < BAD_IMAGE_TTL:
            raise ContainerImageError(bad[1])
    try:
        c.images.get(ref)
    except docker.errors.ImageNotFound:
        if pull == "never":
            _remember_bad(ref, f"container image {ref!r} is not on this Docker Engine and pulling "
                               "is off (extra pull='never'): build or load it first")
        try:
            logger.info("pulling %s", ref)
            repo, tag = _repo_tag(ref)
            c.images.pull(repo, tag=tag)
        except Exception as exc:  # noqa: BLE001 - NotFound, APIError, connection errors
            _remember_bad(ref, f"container image {ref!r} is not on this Docker Engine and could "
                               f"not be pulled ({type(exc).__name__}: {exc}); check the name, "
                               "or build/load the image locally")
    with _image_lock:
        _known_images.add(ref)


def _remember_bad(ref: str, message: str) -> None:
    with _image_lock:
        _bad_images[ref] = (time.monotonic(), message)
    raise ContainerImageError(message)


def _repo_tag(ref: str) -> Tuple[str, Optional[str]]:
    if "@" in ref:
        return ref, None
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(c: "docker.DockerClient") -> List[str]:
    """Remove hither's containers whose owner process (on this host) is gone, e.g. after
    the calling program was killed, and the job folders hither made for them (see
    ``_sweep_job_dir``). Returns the names of the containers removed."""
    removed = []
    # the list call alone (no inspect per container): others may remove theirs meanwhile
    for ct in c.api.containers(all=True, filters={"label": f"{LABEL_JOB}=1"}):
        labels = ct.get("Labels") or {}
        name = (ct.get("Names") or [ct["Id"]])[0].lstrip("/")
        try:
            pid = int(labels.get(LABEL_OWNER_PID, "0"))
        except ValueError:
            continue
        if labels.get(LABEL_OWNER_HOST) != socket.gethostname() or pid <= 0 or _pid_alive(pid):
            continue
        try:
            c.api.remove_container(ct["Id"], force=True)
            removed.append(name)
        except Exception as exc:  # noqa: BLE001 - removed meanwhile by another sweeper
            logger.debug("sweeping %s: %s", name, exc)
            continue
        mounts = ct.get("Mounts") or []
        if labels.get(LABEL_KIND) == "warm":  # its exchange folder on this host too
            for m in mounts:
                _sweep_job_dir(_sweep_exchange(os.path.dirname(m.get("Source", ""))))
        else:  # a one-shot job: its folder is mounted at its own path
            for m in mounts:
                if m.get("Source") and m.get("Source") == m.get("Destination"):
                    _sweep_job_dir(m["Source"])
    if removed:
        logger.info("removed %d stale hither container(s): %s", len(removed), ", ".join(removed))
    return removed


#: how the outside path names the job folders it makes (``hither.outside.path.prepare``)
_JOB_DIR_PREFIX = "hither-job-"


def _sweep_job_dir(job_dir: Optional[str]) -> None:
    """Remove the job folder of a dead caller's container when hither's outside path made
    it (a ``hither-job-*`` folder holding a ``spec.json``): nobody will collect it. A folder
    of another name (a Slurm pilot's queue entry, a caller's own) is left alone."""
    if not job_dir or not os.path.basename(job_dir).startswith(_JOB_DIR_PREFIX) \
            or os.path.islink(job_dir) or not os.path.isfile(os.path.join(job_dir, "spec.json")):
        return
    logger.info("removing the job folder %s of a container whose caller is gone", job_dir)
    shutil.rmtree(job_dir, ignore_errors=True)


def _sweep_exchange(xdir: str) -> Optional[str]:
    """Remove a dead caller's warm exchange folder, after putting back the job directory it
    had moved in (its symbolic link would otherwise dangle); returns that job directory."""
    if not os.path.basename(xdir).startswith("hither-warm-") or not os.path.isdir(xdir):
        return None
    job_dir: Optional[str] = None
    try:
        with open(os.path.join(xdir, "moved-job")) as f:
            job_dir = f.read()
        inner = os.path.join(xdir, "jobs", os.path.basename(job_dir))
        if os.path.islink(job_dir) and os.readlink(job_dir) == inner and os.path.isdir(inner):
            os.unlink(job_dir)
            os.rename(inner, job_dir)
    except OSError:
        pass
    shutil.rmtree(xdir, ignore_errors=True)
    return job_dir


class DockerRunner(ContainerRunner):
    """Runs a job directory in a Docker image through the Engine API.

    The job folder is mounted read-write at its own path, hither-core read-only at
    /opt/hither-core; the container runs as the caller's uid:gid with network ``none``
    unless ``ContainerOptions`` say otherwise, and is removed afterwards. Example::

        from hither.models import ContainerOptions
        runner = DockerRunner(ContainerOptions(memory="512m"))
        code = runner.run("docker://hither-test/python-numpy:3.11", job_dir, timeout=60)

    ``run`` returns 0 when the job's outcome (result or error) was written, 137 for a job
    stopped by ``kill``; raises ``JobTimeoutError`` on timeout,
    ``ContainerImageError`` for a missing image, ``ContainerCrashedError`` (a
    ``ContainerError`` and a ``WorkerDiedError``) when the container ended without the
    outcome (``oom_killed`` tells an out-of-memory kill), ``ContainerError`` otherwise.
    ``extra`` options: ``mount_hither`` (True), ``pull`` ("missing"|"never"),
    ``idle_timeout`` (warm containers, 60 s), ``docker`` (raw create() arguments).
    """

    name: ClassVar[str] = "docker"
    schemes: ClassVar[Tuple[str, ...]] = ("docker",)

    def __init__(self, options: Optional[ContainerOptions] = None) -> None:
        self.options = options or ContainerOptions()
        check_raw_arguments(self.options)
        self._client: Optional["docker.DockerClient"] = None
        self._lock = threading.Lock()
        self._running: Dict[str, Any] = {}  # job_dir -> container (one-shot runs)
        self._killed: Set[str] = set()

    @classmethod
    def is_available(cls) -> bool:
        try:
            client().close()
            return True
        except Exception:  # noqa: BLE001
            return False

    def client(self) -> "docker.DockerClient":
        global _swept
        with self._lock:
            if self._client is None:
                self._client = client()
        with _sweep_lock:
            if not _swept:  # once per process: containers of killed callers go away
                sweep_stale(self._client)
                _swept = True
        return self._client

    def run(self, image: str, job_dir: str, timeout: Optional[float] = None, **_: Any) -> int:
        job_dir = os.path.abspath(str(job_dir))
        ref = docker_ref(image)
        c = self.client()
        try:
            ensure_image(c, ref, self.options.extra.get("pull", "missing"))
            if self.options.reuse:
                from .warm import pool

                return pool(c).run(self, ref, job_dir, timeout)
            return self._run_once(c, ref, job_dir, timeout)
        except Exception as exc:
            if is_connection_error(exc):
                raise engine_error(exc, f"lost the Docker Engine while running {ref}") from exc
            raise

    def _run_once(self, c: "docker.DockerClient", ref: str, job_dir: str,
                  timeout: Optional[float]) -> int:
        import docker
        import requests

        lifeline = wants_lifeline(self.options)
        command = lifeline_command(job_dir) if lifeline else job_command(job_dir)
        kw = create_kwargs(ref, self.options, job_binds(job_dir, self.options), command,
                           job_dir, "job")
        try:
            ct = c.containers.create(**kw)
        except docker.errors.ImageNotFound as exc:
            raise ContainerImageError(f"container image {ref!r} vanished: {exc}") from exc
        except docker.errors.APIError as exc:
            raise ContainerError(f"could not create a container of {ref!r}: {exc}") from exc
        # attached before the start: from its first instruction the job dies with this process
        line = attach_lifeline(c, ct) if lifeline else None
        with self._lock:
            self._running[job_dir] = ct
            cancelled = job_dir in self._killed
        try:
            if cancelled:
                return KILLED
            started = time.monotonic()
            try:
                ct.start()
                if job_dir in self._killed:  # cancelled while starting
                    ct.kill()
                status = ct.wait(timeout=timeout)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                if timeout is not None and time.monotonic() - started >= timeout * 0.99:
                    ct.kill()  # stopped before the error reaches the caller
                    raise JobTimeoutError(
                        f"job {os.path.basename(job_dir)} in {ref} was stopped after "
                        f"{timeout} s (job_timeout)") from None
                raise engine_error(exc, f"lost the Docker Engine while running {ref}") from exc
            except docker.errors.APIError as exc:
                if job_dir in self._killed:
                    return KILLED
                hint = (" (the image needs python3 on its PATH)"
                        if "executable file not found" in str(exc) else "")
                raise ContainerError(f"the container of {ref} could not run the job: {exc}{hint}") from exc
            code = int(status.get("StatusCode", -1))
            if job_dir in self._killed:
                return code or KILLED
            if code == 0 and has_outcome(job_dir):
                return 0
            ct.reload()
            oom = bool(ct.attrs.get("State", {}).get("OOMKilled"))
            logs = ct.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            with open(os.path.join(job_dir, "container.log"), "w") as f:
                f.write(logs)
            if has_outcome(job_dir) and not oom:
                return code
            if code == 127 and "exec python3 failed" in logs:  # docker's init said so
                raise ContainerError(f"the container of {ref} could not run the job: "
                                     "python3 was not found (the image needs python3 on its PATH)")
            raise crashed(ref, job_dir, code, oom, self.options.memory, logs)
        finally:
            with self._lock:
                self._running.pop(job_dir, None)
                self._killed.discard(job_dir)
            remove_quietly(ct)
            close_lifeline(line)

    def kill(self, job_dir: str) -> None:
        """Stop the container running ``job_dir`` (cancel): SIGKILL, so it ends at once."""
        job_dir = os.path.abspath(str(job_dir))
        with self._lock:
            self._killed.add(job_dir)
            ct = self._running.get(job_dir)
        if ct is not None:
            try:
                ct.kill()
            except Exception as exc:  # noqa: BLE001 - it ended meanwhile
                logger.debug("killing %s: %s", ct.name, exc)
        if self.options.reuse:
            from .warm import pool

            if self._client is not None:
                pool(self._client).kill(job_dir)

    def close(self) -> None:
        """Stop the warm containers of this runner's options."""
        if self.options.reuse and self._client is not None:
            from .warm import pool

            pool(self._client).close(self.options.model_dump_json())


__all__ = ["DockerRunner", "client", "sweep_stale", "ensure_image", "create_kwargs",
           "describe_exit"]
