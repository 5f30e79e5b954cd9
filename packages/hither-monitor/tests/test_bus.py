"""The bus view over a real MongoDB-protocol server: resources, jobs, console output, cancel; no secret reaches the page."""
import uuid

import pytest
from starlette.testclient import TestClient

pytest.importorskip("hither_remote")

from hither_monitor.app import create_app  # noqa: E402
from hither_monitor.busview import BusView, open_bus  # noqa: E402
from hither_monitor.eventlog import EventLog  # noqa: E402

from busfill import SECRET, seed_bus  # noqa: E402


@pytest.fixture
def bus_client(mongo_url, small_log, monkeypatch):
    monkeypatch.setenv("HITHER_REMOTE_SECRET", SECRET)
    database = f"hither_monitor_test_{uuid.uuid4().hex[:8]}"
    writer = seed_bus(mongo_url, database)
    view = BusView(open_bus(mongo_url, database))
    client = TestClient(create_app(EventLog(small_log), view), base_url="http://127.0.0.1:8765")
    yield client, writer
    view.close()
    writer.client.drop_database(database)
    writer.close()


def test_resources_jobs_and_counts(bus_client):
    client, _ = bus_client
    b = client.get("/api/bus").json()
    assert b["enabled"] and b["resources"][0]["state"] == "alive" and b["resources"][0]["capacity"] == 4
    assert {j["job_id"]: j["status"] for j in b["jobs"]} == {"queued_job": "queued", "running_job": "running",
                                                           "done_job": "finished"}
    assert b["counts"]["queued"] == 1


def test_console_output_follows_a_cursor(bus_client):
    client, _ = bus_client
    c = client.get("/api/bus/jobs/running_job/console").json()
    assert c["text"] == "line 0\nline 1\nline 2\n" and c["seq"] == 2
    again = client.get("/api/bus/jobs/running_job/console", params={"after": 2, "attempt": 1}).json()
    assert again["text"] == "" and again["seq"] == 2


def test_cancel_from_the_page(bus_client):
    client, writer = bus_client
    assert client.post("/api/bus/jobs/queued_job/cancel").status_code == 403  # no same-origin header
    h = {"X-Hither-Monitor": "1"}
    assert client.post("/api/bus/jobs/queued_job/cancel", headers=h).json()["status"] == "cancelled"
    assert client.post("/api/bus/jobs/running_job/cancel", headers=h).json()["status"] == "cancel_requested"
    assert writer.get("queued_job").status.value == "cancelled"
    assert client.post("/api/bus/jobs/nope/cancel", headers=h).status_code == 404


def test_no_secret_or_packed_arguments_reach_the_page(bus_client, mongo_url):
    client, _ = bus_client
    bodies = "".join(client.get(p).text for p in ("/api/bus", "/api/bus/jobs/queued_job", "/api/info",
                                                  "/api/bus/jobs/running_job/console"))
    assert SECRET not in bodies and "password" not in bodies and mongo_url not in bodies


def test_a_log_job_is_found_on_the_bus_by_its_hash(bus_client):
    client, _ = bus_client
    found = client.get("/api/bus/find", params={"hash": "hash-running_job"}).json()["jobs"]
    assert [j["job_id"] for j in found] == ["running_job"]
    assert client.get("/api/bus/find", params={"hash": "nope"}).json()["jobs"] == []
    assert client.get("/api/bus/find").status_code == 400


def test_a_bus_that_fails_answers_503_in_one_line(bus_client, mongo_url, small_log):
    view = BusView(open_bus(mongo_url, "hither_monitor_unused"))
    view.close()  # every call now raises (as when the server is gone)
    client = TestClient(create_app(EventLog(small_log), view), base_url="http://127.0.0.1:8765")
    r = client.get("/api/bus")
    assert r.status_code == 503 and "could not be read now" in r.json()["error"]
    assert mongo_url not in r.text
