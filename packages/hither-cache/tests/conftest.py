"""Fixtures of hither-cache's tests: a real MongoDB-protocol server on loopback.

``HITHER_TEST_MONGO_URL`` (default mongodb://127.0.0.1:27017; start one with
``bash scripts/services.sh mongo``). Unreachable: the Mongo tests skip, or fail when
``HITHER_REQUIRE_SERVICES=1``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from hither.models import Database
from hither.testing.services import PrivateMongo, free_port, fresh_database, mongo_server, private_mongo_server

MONGO_URL = os.environ.get("HITHER_TEST_MONGO_URL", "mongodb://127.0.0.1:27017")


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return mongo_server(MONGO_URL, install_hint="pip install 'hither-cache[mongo]'")


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[Database]:
    """A ``hi.Database`` with a database name of its own, dropped afterwards."""
    yield from fresh_database(mongo_url, "hither_cache_test_")


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[PrivateMongo]:
    try:
        import pymongo  # noqa: F401
    except ImportError:
        # not a missing service: an environment without the extra (e.g. hatch's
        # cache-only env) tests the file backend alone
        pytest.skip("pymongo is not installed: pip install 'hither-cache[mongo]'")
    yield from private_mongo_server(tmp_path / "secantus")


@pytest.fixture
def dead_mongo_url() -> str:
    """A loopback URL where nothing listens."""
    return f"mongodb://127.0.0.1:{free_port()}"
