"""The Docker Engine out of reach, named: no socket, a socket this user may not use, and an
engine lost between two jobs (through a socket proxy this test owns and closes)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from typing import List

import pytest

from hither.errors import ContainerError
from hither.models import ContainerOptions
from hither_container.docker_runner import DockerRunner

import ct_funcs

pytestmark = pytest.mark.timeout(120)
ENGINE = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class SocketProxy:
    """A unix socket forwarding every connection to the Docker Engine's, until close()."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.conns: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE[len("unix://"):])
            self.conns += [client, engine]
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        os.unlink(self.path)
        self.server.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.mark.parametrize("reuse", [False, True])
def test_losing_the_engine_is_a_container_error_naming_it(tmp_path, monkeypatch, job_dir_of,
                                                          docker_image, reuse):
    if not ENGINE.startswith("unix://"):
        pytest.skip("the engine is not on a unix socket")
    from hither_container.docker_runner import client

    c = client()
    mine = {"label": [f"hither.owner_pid={os.getpid()}"]}
    before = {ct["Id"] for ct in c.api.containers(all=True, filters=mine)}
    from hither_container import warm

    monkeypatch.setattr(warm, "_pool", None)  # a pool of this test, on the proxied engine
    proxy = SocketProxy(str(tmp_path / "engine.sock"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{proxy.path}")
    r = DockerRunner(ContainerOptions(reuse=reuse))
    try:
        assert r.run(docker_image, job_dir_of(ct_funcs.ct_noop), timeout=60) == 0
        proxy.close()
        with pytest.raises(ContainerError, match="lost the Docker Engine.*(no socket there|connection to it broke)"):
            r.run(docker_image, job_dir_of(ct_funcs.ct_noop), timeout=60)
    finally:  # what the lost engine could not remove
        warm._pool = None
        for ct in c.api.containers(all=True, filters=mine):
            if ct["Id"] not in before:
                c.api.remove_container(ct["Id"], force=True)


def test_a_socket_this_user_may_not_use_is_not_a_stopped_engine(tmp_path):
    import shutil

    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the caller without capabilities")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(tmp_path / "engine.sock")
    sock.bind(path)
    sock.listen(1)  # a listening engine socket ...
    os.chmod(path, 0)  # ... which a caller without capabilities may not open
    code = ("from hither_container.docker_runner import client\n"
            "try:\n    client()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    env = dict(os.environ, DOCKER_HOST=f"unix://{path}")
    try:
        out = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
                              sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=60)
    finally:
        sock.close()
    assert "ContainerError" in out.stdout, out.stdout + out.stderr
    assert "permission denied" in out.stdout and "docker' group" in out.stdout
    assert "is dockerd running" not in out.stdout


def test_no_socket_and_nothing_listening_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(ContainerError, match="no socket there"):
        DockerRunner().run("docker://hither-test/python-numpy:3.11", str(tmp_path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "stale.sock"))
    sock.close()  # the file stays; nobody listens
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/stale.sock")
    with pytest.raises(ContainerError, match="nothing listens"):
        DockerRunner().run("docker://hither-test/python-numpy:3.11", str(tmp_path))
