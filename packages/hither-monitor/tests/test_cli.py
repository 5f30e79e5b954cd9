"""``hither-monitor serve``: starts on a free port, stops on SIGINT, and fails in one or two lines, never a traceback."""
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from monitor_procs import start_serve, stop_serve


def run_cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "hither_monitor.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_short_error(proc, *words):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 2, err
    for w in words:
        assert w in err, err


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("hither-monitor 0.")


def test_missing_db(tmp_path):
    assert_short_error(run_cli("serve", "--db", str(tmp_path / "none.sqlite3")), "no event log at", "--db")


def test_default_db_from_the_environment(tmp_path):
    proc = run_cli("serve", env={"HITHER_MONITOR_DB": str(tmp_path / "env.sqlite3")})
    assert_short_error(proc, str(tmp_path / "env.sqlite3"))


def test_port_in_use(small_log):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert_short_error(run_cli("serve", "--db", small_log, "--port", str(port)), "in use", "--port")


def test_bad_port_and_host(small_log):
    assert_short_error(run_cli("serve", "--db", small_log, "--port", "70000"), "--port")
    assert_short_error(run_cli("serve", "--db", small_log, "--host", "no.such.host.invalid"), "--host")


def test_bad_or_unreachable_mongo_url(small_log):
    try:
        import hither_remote  # noqa: F401
    except ImportError:  # the monitor-only environment: the CLI says what to install
        proc = run_cli("serve", "--db", small_log, "--mongo-url", "mongodb://127.0.0.1:1")
        assert_short_error(proc, "hither-monitor[remote]")
        return
    assert_short_error(run_cli("serve", "--db", small_log, "--mongo-url", "http://nope"), "--mongo-url")
    secret_url = "mongodb://ana:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=500"
    proc = run_cli("serve", "--db", small_log, "--mongo-url", secret_url)
    assert_short_error(proc, "cannot reach")
    assert "hunter2" not in proc.stderr


def test_hither_remote_missing_is_one_line(monkeypatch):
    from hither_monitor.busview import BusUnavailable, open_bus

    monkeypatch.setitem(sys.modules, "hither_remote.bus", None)  # as if not installed
    with pytest.raises(BusUnavailable, match=r"hither-monitor\[remote\]"):
        open_bus("mongodb://127.0.0.1:27017", "hither")


def test_serves_on_a_free_port_and_stops_on_ctrl_c(small_log):
    served = start_serve("--db", small_log)
    try:
        with urllib.request.urlopen(served.url + "api/info", timeout=10) as r:
            assert json.load(r)["db"] == os.path.abspath(small_log)
        served.proc.send_signal(signal.SIGINT)
        served.proc.wait(15)
        assert "Traceback" not in "".join(served.lines)
    finally:
        if served.proc.poll() is None:
            stop_serve(served)
