"""hither.testing.services: a missing service skips a test, or fails it under HITHER_REQUIRE_SERVICES=1."""
import socket

import pytest

from hither.testing.services import mongo_server, tcp_service, unavailable


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["skip", "require"])
def mode(request, monkeypatch):
    """Each way a missing service ends a test: the exception pytest raises for it."""
    if request.param == "require":
        monkeypatch.setenv("HITHER_REQUIRE_SERVICES", "1")
        return pytest.fail.Exception
    monkeypatch.delenv("HITHER_REQUIRE_SERVICES", raising=False)
    return pytest.skip.Exception


def test_unavailable_skips_or_fails_with_the_reason(mode):
    with pytest.raises(mode) as info:
        unavailable("no frobnicator; start one with: frob start")
    assert "no frobnicator; start one with: frob start" in str(info.value)
    assert ("HITHER_REQUIRE_SERVICES=1" in str(info.value)) == (mode is pytest.fail.Exception)


def test_other_values_of_the_variable_only_skip(monkeypatch):
    monkeypatch.setenv("HITHER_REQUIRE_SERVICES", "0")
    with pytest.raises(pytest.skip.Exception):
        unavailable("absent")


def test_tcp_service_names_the_service_and_how_to_start_it(mode):
    port = _dead_port()
    with pytest.raises(mode) as info:
        tcp_service(f"http://127.0.0.1:{port}", "the frob API", "frob start")
    assert f"the frob API is not reachable at 127.0.0.1:{port}" in str(info.value)
    assert "start it with: frob start" in str(info.value)


def test_tcp_service_returns_where_something_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        tcp_service(f"http://127.0.0.1:{s.getsockname()[1]}", "a listener", "-")


def test_mongo_server_without_a_server_names_the_url_and_how_to_start_one(mode):
    pytest.importorskip("pymongo")
    url = f"mongodb://127.0.0.1:{_dead_port()}"
    with pytest.raises(mode) as info:
        mongo_server(url)
    assert f"no MongoDB-protocol server at {url}" in str(info.value)
    assert "bash scripts/services.sh mongo" in str(info.value)


def test_private_mongo_server_without_secantus_says_how_to_install_it(mode, monkeypatch, tmp_path):
    from hither.testing import services

    monkeypatch.setattr(services, "SECANTUS", tmp_path / "no-secantusd")
    with pytest.raises(mode) as info:
        next(services.private_mongo_server(tmp_path / "storage"))
    assert "no-secantusd is not installed: bash scripts/services.sh mongo" in str(info.value)
