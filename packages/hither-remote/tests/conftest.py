"""Fixtures of hither-remote's tests: the real MongoDB-protocol server and S3 API on
loopback (``bash scripts/services.sh``), a bus database of each test's own, a store
prefix of each test's own, and ``hither-remote serve`` processes with folders of their own
(as if on another machine: they share only MongoDB, the S3 store and the secret).

Unreachable services skip the tests, or fail them when ``HITHER_REQUIRE_SERVICES=1``.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from hither.models import Database
from hither.testing.services import fresh_database, mongo_server, tcp_service
from hither_remote.models import BusJob

MONGO_URL = os.environ.get("HITHER_TEST_MONGO_URL", "mongodb://127.0.0.1:27017")
S3_ENDPOINT = os.environ.get("HITHER_TEST_S3_ENDPOINT", "http://127.0.0.1:5555")
#: moto accepts any credentials; real ones are never used by these tests
DUMMY_AWS_ENV = {"AWS_ACCESS_KEY_ID": "hither-test", "AWS_SECRET_ACCESS_KEY": "hither-test",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": ""}
SECRET = "test-secret-" + uuid.uuid4().hex

sys.path.insert(0, os.path.dirname(__file__))


@contextlib.contextmanager
def running(cr):  # noqa: ANN001, ANN201
    """``cr`` (a ``hi.ComputeResource``) serving from a thread of this process until the
    block ends."""
    t = threading.Thread(target=cr.run, daemon=True)
    t.start()
    try:
        yield cr
    finally:
        cr.stop()
        t.join(30)


def process_env(root: Path, store_url: str, storage_options: Dict[str, object], **extra: str) -> Dict[str, str]:
    """The environment of a hither process of its own (a serve, a client script): no
    ``HITHER_*`` of this one, the test's secret and S3 store, its caches and temp folder
    under ``root`` (as on another machine), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITHER_")}
    env.update(DUMMY_AWS_ENV)
    # the secret the autouse fixture set (a test module importing this file gets a copy of
    # it whose SECRET differs)
    env.update({"HITHER_REMOTE_SECRET": os.environ["HITHER_REMOTE_SECRET"], "HITHER_STORE_URL": store_url,
                "HITHER_STORE_OPTIONS": json.dumps(storage_options),
                "HITHER_STORE_CACHE": str(root / "store-cache"), "HITHER_TEMP_DIR": str(root / "tmp")})
    env.update(extra)
    return env


def bus_job(i: int) -> BusJob:
    """A queued job for ``resource1`` made for the bus directly (no client): the ``i``-th
    created (ids and creation times in order), expiring in an hour."""
    now = time.time()
    return BusJob(_id=f"job-{i:03d}-{uuid.uuid4().hex[:6]}", resource_id="resource1", function_name="f",
                  document={}, created=now + i * 1e-3, expires=now + 3600, updated=now)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HITHER_REMOTE_SECRET", SECRET)
    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "client-tmp"))
    monkeypatch.setenv("HITHER_RESULTS_DIR", str(tmp_path / "client-results"))
    monkeypatch.setenv("HITHER_STORE_CACHE", str(tmp_path / "client-store-cache"))


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return mongo_server(MONGO_URL)


@pytest.fixture
def db(mongo_url: str) -> Iterator[Database]:
    """A ``hi.Database`` with a database name of its own, dropped afterwards."""
    yield from fresh_database(mongo_url, "hither_remote_test_")


@pytest.fixture
def other_db(mongo_url: str) -> Iterator[Database]:
    """A second database of the same server (a bus that is not ``db``)."""
    yield from fresh_database(mongo_url, "hither_remote_test_")


@pytest.fixture(scope="session")
def s3_options() -> Iterator[Dict[str, object]]:
    tcp_service(S3_ENDPOINT, "the S3 API (moto_server)", "bash scripts/services.sh s3")
    import s3fs

    with pytest.MonkeyPatch.context() as mp:
        for k, v in DUMMY_AWS_ENV.items():
            mp.setenv(k, v)
        opts = {"client_kwargs": {"endpoint_url": S3_ENDPOINT}}
        fs = s3fs.S3FileSystem(**opts)
        bucket = f"hither-remote-test-{uuid.uuid4().hex[:12]}"
        fs.mkdir(bucket)
        opts["_bucket"] = bucket
        yield opts
        try:
            fs.rm(bucket, recursive=True)
        except FileNotFoundError:
            pass


@pytest.fixture
def store_url(s3_options: Dict[str, object]) -> str:
    return f"s3://{s3_options['_bucket']}/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def storage_options(s3_options: Dict[str, object]) -> Dict[str, object]:
    return {k: v for k, v in s3_options.items() if not k.startswith("_")}


@pytest.fixture
def store(store_url: str, storage_options: Dict[str, object], tmp_path: Path):  # noqa: ANN201
    """The client's view of the S3 store (its own cache folder)."""
    from hither_store import Store

    return Store(store_url, storage_options=storage_options, cache_dir=str(tmp_path / "client-store-cache"))


@pytest.fixture
def jh(db, store):  # noqa: ANN001, ANN201
    """The client's ``RemoteJobHandler`` for ``resource1`` on the test's bus; shut down after."""
    import hither as hi

    handler = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    yield handler
    handler.shutdown()


class Server:
    """One ``hither-remote serve`` process, with folders of its own under ``root``."""

    def __init__(self, root: Path, env: Dict[str, str], args: List[str]) -> None:
        self.root, self.env, self.args = root, env, args
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = root / "serve.log"

    def start(self) -> "Server":
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hither_remote.cli", "serve", *self.args],
                                     env=self.env, cwd=str(self.root), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.proc is not None and self.proc.poll() is None, f"serve exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"{text!r} not in the serve log:\n{self.log()}"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the process and the job it runs
            else:
                self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._log.close()
        return code


@pytest.fixture
def serve(tmp_path: Path, db, store_url: str, storage_options: Dict[str, object]):  # noqa: ANN201
    """``serve(name, *args)``: a started ``hither-remote serve`` for the test's bus; all are
    killed at the end of the test."""
    servers: List[Server] = []

    def start(name: str = "resource", *args: str, resource_id: str = "resource1", database=None,
              env: Optional[Dict[str, str]] = None) -> Server:
        bus_db = database or db
        root = tmp_path / name
        env = process_env(root, store_url, storage_options, HITHER_REMOTE_MONGO_URL=bus_db.mongo_url,
                          HITHER_REMOTE_DATABASE=bus_db.database, HITHER_RESULTS_DIR=str(root / "results"),
                          **(env or {}))
        s = Server(root, env, ["--resource-id", resource_id, "--work-dir", str(root / "jobs"), *args]).start()
        servers.append(s)
        s.wait_log("serving")
        return s

    yield start
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.stop(signal.SIGKILL)
