"""Test services: skip a test whose service is absent (fail under ``HITHER_REQUIRE_SERVICES=1``).

The packages' test suites need real services on loopback (a MongoDB-protocol server, an S3
API, Slurm, Docker; ``bash scripts/services.sh`` starts them). Where one is missing a test
skips, unless the environment says the services must be there (CI sets
``HITHER_REQUIRE_SERVICES=1``): then it fails, naming what was missing and how to start it.

- ``unavailable(reason)``: that skip-or-fail, for any service.
- ``tcp_service(url, name, how_to_start)``: skip-or-fail unless something listens at
  ``url``'s host and port.
- ``mongo_server(url)``: skip-or-fail unless a MongoDB-protocol server at ``url`` answers a
  ping (pymongo is imported here, so hither-core needs no pymongo).
- ``fresh_database(url, prefix)``: a ``hi.Database`` of a name of its own, dropped afterwards.
"""
from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Iterator, NoReturn
from urllib.parse import urlparse

import pytest

from hither.models import Database

#: set to "1" where a missing service is a failure, not a reason to skip (CI)
REQUIRE_SERVICES_ENV = "HITHER_REQUIRE_SERVICES"
MONGO_HOW_TO_START = "bash scripts/services.sh mongo"


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
