"""The launcher's end of a container's lifeline (see ``lifeline.py`` for the container's
end): the container is created with stdin open and closed at the first detach, and the
launcher attaches to its stdin before starting it and holds that connection, writing
nothing, for the container's life. When the launcher dies, however (SIGKILL too), the
kernel closes the connection, the Docker Engine closes the container's stdin, and the
container's process 1 ends at EOF, taking the job's processes with it. Costs one Engine
request per container; nothing per job in a warm container."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, List, Optional, Set

from hither.models import ContainerOptions

from .jobmount import job_command

if TYPE_CHECKING:  # pragma: no cover
    import docker

logger = logging.getLogger("hither_container.lifeline")

#: the container's end, run as ``python3 -c`` (one-shot) or copied next to the warm loop
LIFELINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifeline.py")
_source: List[str] = []
_held: Set[Any] = set()  # this process's open lifelines (closed in forked children)
_held_lock = threading.Lock()


def wants_lifeline(options: ContainerOptions) -> bool:
    """Whether containers of ``options`` get a lifeline: always, unless raw docker arguments
    (``extra["docker"]``) turn stdin off or ask for a terminal."""
    raw = options.extra.get("docker", {})
    return bool(raw.get("stdin_open", True)) and not raw.get("tty") and not raw.get("detach")


def lifeline_command(job_dir: str) -> List[str]:
    """The one-shot container's command: the lifeline, which runs the job's runner.py."""
    if not _source:
        with open(LIFELINE_SOURCE) as f:
            _source.append(f.read())
    return ["python3", "-c", _source[0]] + job_command(job_dir)[1:]


def attach_lifeline(c: "docker.DockerClient", ct: Any) -> Optional[Any]:
    """Attach to the (created, not yet started) container's stdin; the connection to hold
    until the container is removed, or None (logged) if the Engine refused: the container
    then runs without a lifeline, as before it existed, and the sweep is the only fallback."""
    try:
        sock = c.api.attach_socket(ct.id, params={"stdin": 1, "stream": 1})
    except Exception as exc:  # noqa: BLE001 - APIError, connection errors
        logger.warning("no lifeline for container %s (%s): it will outlive this process if "
                       "this process is killed, until a later hither process sweeps it",
                       getattr(ct, "name", ct), exc)
        return None
    with _held_lock:
        _held.add(sock)
    return sock


def close_lifeline(sock: Optional[Any]) -> None:
    """Let go of a lifeline (its container is removed, or must end now)."""
    if sock is None:
        return
    with _held_lock:
        _held.discard(sock)
    raw = getattr(sock, "_sock", sock)  # a SocketIO over a unix socket, or the socket
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    for s in (sock, raw):
        try:
            s.close()
        except OSError:
            pass


def _forget_in_child() -> None:
    """In a forked child: close its copies of the lifelines without touching the
    connections (no shutdown), so a child outliving the launcher does not keep them open."""
    global _held_lock
    _held_lock = threading.Lock()  # another thread may have held it at the fork
    for sock in list(_held):
        raw = getattr(sock, "_sock", sock)
        try:
            fd = raw.detach()  # the Python object lets go of the descriptor ...
            if fd >= 0:
                os.close(fd)  # ... which only this child's copy closes
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
