"""Fixtures of hither-container's tests: a real Docker Engine and the locally built image.

``HITHER_TEST_IMAGE`` (default hither-test/python-numpy:3.11; build it, and start the
engine, with ``bash scripts/services.sh docker``). Without the engine or the image the
Docker tests skip, or fail when ``HITHER_REQUIRE_SERVICES=1``. At the end of the session no
container of this test process may be left (``docker ps -a`` shows none of them).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator, List

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import hither as hi  # noqa: E402

IMAGE = os.environ.get("HITHER_TEST_IMAGE", "hither-test/python-numpy:3.11")


def _unavailable(reason: str) -> None:
    if os.environ.get("HITHER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (HITHER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _hither_reset() -> Iterator[None]:
    yield
    hi.reset()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        from hither_container.docker_runner import client
        c = client()
    except Exception as exc:  # noqa: BLE001 - ContainerError, or docker-py missing
        _unavailable(f"no Docker Engine: {exc}")  # the message says how to start one
    try:
        c.images.get(IMAGE)
    except Exception:  # noqa: BLE001
        _unavailable(f"image {IMAGE} is not built: bash scripts/services.sh docker")
    yield c
    c.close()


def own_containers(c: Any, running: bool = False) -> List[str]:
    """Names of the containers this test process started that still exist (any state, or
    only running ones)."""
    # the list call alone (no inspect per container, which races with removals)
    return [(ct.get("Names") or [ct["Id"]])[0].lstrip("/") for ct in c.api.containers(
        all=not running, filters={"label": ["hither.job=1", f"hither.owner_pid={os.getpid()}"]})]


@pytest.fixture
def leftover_containers(docker_client: Any) -> Callable[..., List[str]]:
    return lambda running=False: own_containers(docker_client, running)


@pytest.fixture(scope="session")
def docker_image(docker_client: Any) -> str:
    return f"docker://{IMAGE}"


@pytest.fixture(scope="session", autouse=True)
def _no_container_outlives_the_suite() -> Iterator[None]:
    yield
    try:
        from hither_container import warm
        from hither_container.docker_runner import client

        warm.close_all()  # what atexit would do; then nothing may be left
        c = client()
    except Exception:  # noqa: BLE001 - no engine: nothing can be left
        return
    left = own_containers(c)
    c.close()
    assert left == [], f"containers left behind by the test suite: {left}"


@pytest.fixture
def job_dir_of(tmp_path: Any, monkeypatch: Any) -> Iterator[Callable[..., str]]:
    """``job_dir_of(fn, **kwargs)``: a job directory of ``fn(**kwargs)`` to run by hand."""
    from hither_container.testing import job_dirs

    yield from job_dirs(tmp_path, monkeypatch)
