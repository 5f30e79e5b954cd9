"""Fixtures of hither-cache's tests: a real MongoDB-protocol server on loopback.

``HITHER_TEST_MONGO_URL`` (default mongodb://127.0.0.1:27017; start one with
``bash scripts/services.sh mongo``). Unreachable: the Mongo tests skip, or fail when
``HITHER_REQUIRE_SERVICES=1``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from hither.models import Database
from hither.testing.services import fresh_database, mongo_server, unavailable

MONGO_URL = os.environ.get("HITHER_TEST_MONGO_URL", "mongodb://127.0.0.1:27017")
SECANTUS = Path(os.environ.get("HITHER_TEST_SECANTUSD", "/opt/secantus/bin/secantusd-py"))


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return mongo_server(MONGO_URL, install_hint="pip install 'hither-cache[mongo]'")


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[Database]:
    """A ``hi.Database`` with a database name of its own, dropped afterwards."""
    yield from fresh_database(mongo_url, "hither_cache_test_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMongo:
    """A SecantusDB server of one test (for outages), persisting in ``storage``."""

    def __init__(self, storage: Path) -> None:
        self.port = free_port()
        self.storage = storage
        self.url = f"mongodb://127.0.0.1:{self.port}"
        self.proc: "subprocess.Popen[bytes] | None" = None

    def start(self, wait: bool = True) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(SECANTUS), "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.storage)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.proc is not None and self.proc.poll() is None, "secantusd exited"
            time.sleep(0.05)
        raise TimeoutError(f"secantusd did not listen on {self.port} within {timeout} s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[PrivateMongo]:
    try:
        import pymongo  # noqa: F401
    except ImportError:
        # not a missing service: an environment without the extra (e.g. hatch's
        # cache-only env) tests the file backend alone
        pytest.skip("pymongo is not installed: pip install 'hither-cache[mongo]'")
    if not SECANTUS.exists():
        unavailable(f"{SECANTUS} is not installed: bash scripts/services.sh mongo")
    server = PrivateMongo(tmp_path / "secantus")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def dead_mongo_url() -> str:
    """A loopback URL where nothing listens."""
    return f"mongodb://127.0.0.1:{free_port()}"
