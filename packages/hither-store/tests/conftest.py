"""Fixtures of hither-store's tests: one store per backend (local folder, memory://, S3).

The S3 backend talks to a real S3 API on loopback (``moto_server``, started by
``bash scripts/services.sh s3``) at ``$HITHER_TEST_S3_ENDPOINT`` (default
http://127.0.0.1:5555). When it is not reachable the S3 tests are skipped, or fail when
``HITHER_REQUIRE_SERVICES=1`` (CI).
"""
from __future__ import annotations

import os
import uuid
from typing import Dict, Iterator

import pytest

from hither.testing.services import tcp_service, unavailable

S3_ENDPOINT = os.environ.get("HITHER_TEST_S3_ENDPOINT", "http://127.0.0.1:5555")
#: moto accepts any credentials; real ones must never be used (or needed) by these tests
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "hither-test",
    "AWS_SECRET_ACCESS_KEY": "hither-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "",
}


@pytest.fixture(autouse=True)
def _isolated_store_env(tmp_path, monkeypatch) -> None:
    """Keep every test away from ~/.cache and from the developer's own store settings."""
    monkeypatch.setenv("HITHER_STORE_CACHE", str(tmp_path / "store-cache"))
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "default-store"))
    monkeypatch.delenv("HITHER_STORE_OPTIONS", raising=False)


@pytest.fixture(scope="session")
def s3_options() -> Iterator[Dict[str, object]]:
    """fsspec options reaching the test S3 API, with dummy credentials in the environment."""
    tcp_service(S3_ENDPOINT, "the S3 API (moto_server)", "bash scripts/services.sh s3")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        unavailable("s3fs is not installed: pip install 'hither-store[s3]'")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in DUMMY_AWS_ENV.items():
            mp.setenv(key, value)
        yield {"client_kwargs": {"endpoint_url": S3_ENDPOINT}}


@pytest.fixture(scope="session")
def s3_bucket(s3_options) -> Iterator[str]:
    """A bucket made for this test run, removed at its end."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options)
    bucket = f"hither-store-test-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    yield bucket
    try:
        fs.rm(bucket, recursive=True)
    except FileNotFoundError:
        pass


@pytest.fixture
def s3_store_url(s3_bucket) -> str:
    """A fresh prefix in the run's bucket."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}"


BACKENDS = ["local", "memory", "s3"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def store_args(backend, tmp_path, request):
    """(url, storage_options) of an empty store of the backend under test."""
    if backend == "local":
        return str(tmp_path / "store"), None
    if backend == "memory":
        return f"memory://hither-test-{uuid.uuid4().hex[:12]}", None
    return request.getfixturevalue("s3_store_url"), request.getfixturevalue("s3_options")


@pytest.fixture
def store(store_args):
    from hither_store import Store

    url, options = store_args
    s = Store(url, storage_options=options)
    yield s
    if backend_is_memory(url) and s.fs.exists(s.root):
        s.fs.rm(s.root, recursive=True)  # memory:// is process-global: free what the test stored


def backend_is_memory(url: str) -> bool:
    return url.startswith("memory://")


@pytest.fixture
def readonly_mount(tmp_path):
    """(folder, make_read_only): a tmpfs mounted at ``folder``, writable until
    ``make_read_only()`` remounts it read-only. Real read-only file system: as root,
    permission bits would not stop a write. Needs root and mount; unmounted at the end."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only tmpfs needs root and mount(8)")
    folder = tmp_path / "mnt"
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)],
                                             check=True, timeout=30)
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30)
