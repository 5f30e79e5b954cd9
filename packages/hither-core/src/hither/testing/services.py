"""Test services: skip a test whose service is absent (fail under ``HITHER_REQUIRE_SERVICES=1``).

The packages' test suites need real services on loopback (a MongoDB-protocol server, an S3
API, Slurm, Docker; ``bash scripts/services.sh`` starts them). Where one is missing a test
skips, unless the environment says the services must be there (CI sets
``HITHER_REQUIRE_SERVICES=1``): then it fails, naming what was missing and how to start it.

- ``unavailable(reason)``: that skip-or-fail, for any service.
- ``tcp_service(url, name, how_to_start)``: skip-or-fail unless something listens at
  ``url``'s host and port.
- ``mongo_server(url)``: skip-or-fail unless a MongoDB-protocol server at ``url`` answers a
  ping (pymongo is imported only when called: hither-core does not depend on it).
- ``fresh_database(url, prefix)``: a ``hi.Database`` of a name of its own, dropped afterwards.
- ``private_mongo_server(storage)``: a MongoDB-protocol server of one test (SecantusDB, which
  ``scripts/services.sh mongo`` installs), to stop and start again for outages.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional
from urllib.parse import urlparse

import pytest

from hither.models import Database

#: set to "1" where a missing service is a failure, not a reason to skip (CI)
REQUIRE_SERVICES_ENV = "HITHER_REQUIRE_SERVICES"
MONGO_HOW_TO_START = "bash scripts/services.sh mongo"
#: the SecantusDB server (a MongoDB-protocol server in Python) that private_mongo_server starts
SECANTUS = Path(os.environ.get("HITHER_TEST_SECANTUSD", "/opt/secantus/bin/secantusd-py"))


def unavailable(reason: str) -> NoReturn:
    """Skip the running test because ``reason``; fail it instead when
    ``HITHER_REQUIRE_SERVICES=1``."""
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1)")
    pytest.skip(reason)


def tcp_service(url: str, name: str, how_to_start: str, default_port: int = 80) -> None:
    """Return when something accepts a TCP connection at ``url``'s host and port (within 2 s);
    else ``unavailable``, naming ``name`` and ``how_to_start`` it."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc}); start it with: {how_to_start}"
    unavailable(reason)


def mongo_server(url: str, install_hint: str = "pip install pymongo") -> str:
    """``url`` once a MongoDB-protocol server there answers a ping (within 2 s); else
    ``unavailable``. Without pymongo the test skips (an environment without the extra, not a
    missing service), with ``install_hint`` in the reason."""
    try:
        import pymongo
    except ImportError:
        pytest.skip(f"pymongo is not installed: {install_hint}")
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        client.admin.command("ping")
    except Exception as exc:  # noqa: BLE001 - any failure to answer means: no usable server
        unavailable(f"no MongoDB-protocol server at {url} ({type(exc).__name__}); "
                    f"start one with: {MONGO_HOW_TO_START}")
    finally:
        client.close()
    return url


def fresh_database(url: str, prefix: str) -> Iterator[Database]:
    """A ``hi.Database`` on ``url`` named ``prefix`` and a random suffix; dropped when the
    generator is closed (``yield from`` it in a fixture)."""
    import pymongo

    db = Database(mongo_url=url, database=f"{prefix}{uuid.uuid4().hex[:12]}")
    yield db
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(db.database)
    finally:
        client.close()


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateMongo:
    """A SecantusDB server of one test on a free loopback port, persisting in ``storage`` (so
    a restart keeps the data): stop it and start it again for an outage."""

    def __init__(self, storage: Path) -> None:
        self.port = free_port()
        self.storage = storage
        self.url = f"mongodb://127.0.0.1:{self.port}"
        self.proc: "Optional[subprocess.Popen[bytes]]" = None

    def start(self, wait: bool = True) -> None:
        """Start the server; with ``wait``, return once it listens."""
        self.storage.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(SECANTUS), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the server listens; fail if it exits or does not listen in time."""
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
        """Stop the server (SIGTERM, or SIGKILL with ``kill``; killed after 20 s anyway)."""
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


def private_mongo_server(storage: Path) -> Iterator[PrivateMongo]:
    """A started ``PrivateMongo`` persisting in ``storage``, killed when the generator is
    closed (``yield from`` it in a fixture); ``unavailable`` without SecantusDB."""
    if not SECANTUS.exists():
        unavailable(f"{SECANTUS} is not installed: {MONGO_HOW_TO_START}")
    server = PrivateMongo(storage)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
