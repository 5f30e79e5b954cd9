"""Creating and removing hither's Docker containers: the arguments of ``containers.create``
(``create_kwargs``: labels, GPUs, memory, hardening, the lifeline's open stdin), the check of
raw engine arguments, and ``remove_quietly``;
what one-shot containers (``docker_runner``) and warm ones (``warm``) share."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, Dict, List, Protocol, Tuple

from hither.errors import ContainerEngineError, ContainerError
from hither.models import ContainerOptions
from .jobmount import LABEL_JOB, LABEL_KIND, LABEL_OWNER_HOST, LABEL_OWNER_PID, calling_user, job_env

logger = logging.getLogger("hither_container.docker")


class HasOptions(Protocol):
    """A runner as a warm container sees it: its container options."""
    options: ContainerOptions


def labels(kind: str) -> Dict[str, str]:
    return {LABEL_JOB: "1", LABEL_OWNER_PID: str(os.getpid()),
            LABEL_OWNER_HOST: socket.gethostname(), LABEL_KIND: kind}


def device_requests(gpus: Any) -> List[Any]:
    """docker-py device requests for ``ContainerOptions.gpus``: a count (-1 or "all": every
    GPU) or a comma-separated list of device ids."""
    from docker.types import DeviceRequest

    if gpus is None:
        return []
    if gpus == "all" or (isinstance(gpus, int) and not isinstance(gpus, bool)):
        return [DeviceRequest(count=-1 if gpus == "all" else int(gpus), capabilities=[["gpu"]])]
    ids = [g.strip() for g in str(gpus).split(",") if g.strip()]
    if not ids:
        raise ContainerError(f"gpus={gpus!r}: give a count, 'all' or device ids like '0,1'")
    return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]


def create_kwargs(ref: str, options: ContainerOptions, binds: List[Tuple[str, str, str]],
                  command: List[str], workdir: str, kind: str) -> Dict[str, Any]:
    """Arguments of ``containers.create`` for a hither container (pure: tested as is)."""
    kw: Dict[str, Any] = dict(
        image=ref, command=command, working_dir=workdir,
        user=options.user or calling_user(),
        network_mode=options.network or "none",
        environment=job_env(options),
        volumes={h: {"bind": c, "mode": m} for h, c, m in binds},
        labels=labels(kind),
        name=f"hither-{kind}-{uuid.uuid4().hex[:12]}",
        # the lifeline: stdin open, and closed when the attached launcher goes (StdinOnce,
        # which docker-py sets for a container that is not "detached"; create() starts and
        # attaches nothing by itself)
        stdin_open=True,
        detach=False,
    )
    if options.memory:
        kw["mem_limit"] = options.memory
        kw["memswap_limit"] = options.memory  # no swap: over the limit is an OOM kill
    kw.update(hardening(options))
    reqs = device_requests(options.gpus)
    if reqs:
        kw["device_requests"] = reqs
    for k, v in options.extra.get("docker", {}).items():  # raw docker-py create() arguments
        kw[k] = v
    return kw


def hardening(options: ContainerOptions) -> Dict[str, Any]:
    """The ``containers.create`` arguments of ``ContainerOptions``' hardening (each on by
    default): a pids limit, a read-only image file system with a tmpfs /tmp (the job folder
    is a bind mount: writable), docker's init as process 1, no new privileges, and dropped
    capabilities."""
    kw: Dict[str, Any] = {}
    if options.pids_limit:
        kw["pids_limit"] = options.pids_limit
    if options.read_only:
        kw["read_only"] = True
        kw["tmpfs"] = {"/tmp": "rw,nosuid,nodev,mode=1777"}
        if "HOME" not in options.env:  # caches under ~ need a writable home
            kw["environment"] = dict(job_env(options), HOME="/tmp")
    if options.init:
        kw["init"] = True
    if options.no_new_privileges:
        kw["security_opt"] = ["no-new-privileges"]
    if options.cap_drop:
        kw["cap_drop"] = list(options.cap_drop)
    return kw


def check_raw_arguments(options: ContainerOptions) -> None:
    """``extra["docker"]`` keys must be docker-py ``containers.create`` arguments: a typo is
    a ``ContainerError`` naming it (with the closest known name), not an engine error later."""
    import difflib

    from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS

    known = set(RUN_CREATE_KWARGS) | set(RUN_HOST_CONFIG_KWARGS) | {"image", "command"}
    for key in options.extra.get("docker", {}):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ContainerError(f"ContainerOptions extra['docker'] has {key!r}, which is no "
                                 f"docker-py containers.create() argument{hint}")


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def _causes(exc: BaseException) -> List[BaseException]:
    """``exc`` and what it wraps (requests -> urllib3 -> the socket's OSError)."""
    seen: List[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if e in seen:
            continue
        seen.append(e)
        todo += [c for c in (e.__cause__, e.__context__, getattr(e, "reason", None))
                 if isinstance(c, BaseException)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def engine_error(exc: BaseException, doing: str) -> ContainerError:
    """A ``ContainerError`` naming why the Docker Engine could not be reached while
    ``doing``: no socket, a socket this user may not use, nothing listening, no answer.
    All but the permission problem are a ``ContainerEngineError`` (the engine is gone or
    restarting: an infrastructure failure, which ``hi.Retry`` retries by default)."""
    where = engine_address()
    causes = _causes(exc)
    text = " ".join(str(e) for e in causes)
    if any(isinstance(e, PermissionError) for e in causes) or "Permission denied" in text:
        why = (f"permission denied on the Docker Engine's socket {where}: this user may not use "
               "it (the engine may well be running); add the user to the 'docker' group, use "
               "rootless Docker, or set DOCKER_HOST")
        return ContainerError(f"{doing}: {why}")  # not a passing outage: no retry
    elif any(isinstance(e, FileNotFoundError) for e in causes) or "No such file" in text:
        why = (f"the Docker Engine at {where} does not answer: there is no socket there; is "
               "dockerd running? start it (e.g. `bash scripts/services.sh docker`, or "
               "`dockerd`) or set DOCKER_HOST")
    elif any(isinstance(e, ConnectionRefusedError) for e in causes) or "refused" in text:
        why = (f"the Docker Engine at {where} does not answer: nothing listens on its socket "
               "(the engine stopped?); start it (e.g. `bash scripts/services.sh docker`)")
    elif any(isinstance(e, (BrokenPipeError, ConnectionResetError)) for e in causes):
        why = (f"the connection to it broke: the Docker Engine at {where} stopped or restarted "
               "(or its socket went away) mid-request")
    elif any(isinstance(e, (TimeoutError, socket.timeout)) for e in causes) or "timed out" in text:
        why = f"the Docker Engine at {where} does not answer: no reply in time (overloaded?)"
    else:
        why = (f"the Docker Engine at {where} does not answer ({type(exc).__name__}: {exc}); "
               "start it (e.g. `bash scripts/services.sh docker`, or `dockerd`) or set DOCKER_HOST")
    return ContainerEngineError(f"{doing}: {why}")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the Engine could not be reached (not an answer it gave)."""
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError))


def remove_quietly(ct: Any) -> None:
    try:
        ct.remove(force=True)
    except Exception as exc:  # noqa: BLE001 - already gone
        logger.debug("removing %s: %s", getattr(ct, "name", ct), exc)
