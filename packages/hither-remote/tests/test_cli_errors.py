"""The ``hither-remote`` console script as a user meets it: every error one or two lines that
name the problem and the fix, a non-zero exit code and never a traceback; ``--version``,
``--config`` keys checked, help on every option; ``serve`` against a bus that does not
answer logs short retries with growing waits and stops at once on SIGTERM. Each test runs
the installed console script in a process of its own (a real bus on 127.0.0.1:27017, an
unreachable one on a closed port)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = str(Path(sys.executable).parent / "hither-remote")


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def error_lines(proc: subprocess.CompletedProcess, most: int = 2) -> List[str]:
    """The error's lines, checked: a failure, at most ``most`` lines, no traceback."""
    assert proc.returncode not in (0, None), proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= most and lines[0].startswith("Error: "), proc.stderr
    return lines


@pytest.mark.parametrize("command", [["status"], ["jobs"], ["logs", "0123abcd"], ["cancel", "0123abcd"], ["prune"]])
def test_an_unreachable_bus_is_two_lines_naming_the_fix(command: List[str], closed_port: int) -> None:
    url = f"mongodb://someone:hunter2@127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    proc = run(*command, "--mongo-url", url, "--connect-timeout", "1")
    took = time.monotonic() - t0
    first, fix = error_lines(proc)
    assert proc.returncode == 1
    assert f"no MongoDB answers at mongodb://someone:***@127.0.0.1:{closed_port} within 1 s" in first
    assert "Connection refused" in first and "--mongo-url" in fix and "--connect-timeout" in fix
    assert "hunter2" not in proc.stderr  # the password stays out of the message
    assert took < 20, took


def test_the_connect_timeout_comes_from_the_environment(closed_port: int) -> None:
    proc = run("status", "--mongo-url", f"mongodb://127.0.0.1:{closed_port}",
               env={"HITHER_REMOTE_CONNECT_TIMEOUT": "0.5"})
    assert "within 0.5 s" in error_lines(proc)[0]


@pytest.mark.parametrize("url", ["bad://x", "http://127.0.0.1:27017", "127.0.0.1:27017", "mongodb://a:b:c"])
def test_a_url_that_is_not_mongodb_is_one_line(url: str) -> None:
    (line,) = error_lines(run("jobs", "--mongo-url", url), most=1)
    assert "--mongo-url" in line and "mongodb://HOST[:PORT]" in line


def test_serve_with_a_bogus_store_url_is_one_line(closed_port: int) -> None:
    (line,) = error_lines(run("serve", "--resource-id", "r1", "--mongo-url", f"mongodb://127.0.0.1:{closed_port}",
                              "--store-url", "bogus://x"), most=1)
    assert "cannot open the store 'bogus://x'" in line and "give a local folder or an fsspec URL" in line


def test_serve_job_cache_without_hither_cache_says_how_to_install_it(tmp_path: Path, closed_port: int) -> None:
    blocked = tmp_path / "blocked" / "hither_cache"  # hither-cache cannot be imported here
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named hither_cache')\n")
    proc = run("serve", "--resource-id", "r1", "--mongo-url", f"mongodb://127.0.0.1:{closed_port}",
               "--job-cache", str(tmp_path / "cache"), env={"PYTHONPATH": str(blocked.parent)})
    (line,) = error_lines(proc, most=1)
    assert "pip install hither-cache" in line  # installed but broken, or not installed at all


def test_version() -> None:
    from hither_remote import __version__

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"hither-remote, version {__version__}"


@pytest.mark.parametrize("text,named", [
    ('wrkers = 2\n', "unknown key 'wrkers' (did you mean workers?)"),
    ('[serve]\nresorce-id = "r1"\n', "unknown key 'resorce-id' in [serve] (did you mean resource-id?)"),
    ('[status]\nworkers = 2\n', "unknown key 'workers' in [status]"),
    ('[srve]\nworkers = 2\n', "unknown table [srve]"),
    ('secret = "x"\n', "the secret does not belong in the config file"),
    ('resource-id = \n', "cannot read the config file")])
def test_config_files_with_unknown_keys_are_refused_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    config = tmp_path / "remote.toml"
    config.write_text(text)
    (line,) = error_lines(run("--config", str(config), "status", "--connect-timeout", "0.2"), most=1)
    assert str(config) in line and named in line, line


def test_config_keys_of_every_command_are_accepted(tmp_path: Path, db) -> None:
    config = tmp_path / "remote.toml"
    config.write_text(f'mongo-url = "{db.mongo_url}"\ndatabase = "{db.database}"\nresource-id = "r1"\n'
                      'limit = 3\n[serve]\nworkers = 2\nlog-level = "debug"\nslurm-local-pilots = true\n')
    proc = run("--config", str(config), "jobs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"no jobs of resource 'r1' on the bus {db.mongo_url} (database '{db.database}')"


def test_empty_jobs_says_so_on_stderr(db) -> None:
    proc = run("jobs", "--mongo-url", db.mongo_url, "--database", db.database)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.strip() == f"no jobs on the bus {db.mongo_url} (database '{db.database}')"


def test_log_level_is_a_choice() -> None:
    proc = run("serve", "--resource-id", "r1", "--log-level", "LOUD")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'LOUD' is not one of" in proc.stderr and "'debug'" in proc.stderr.lower()


def test_every_option_has_help() -> None:
    import click

    from hither_remote.cli import main

    ctx = click.Context(main)
    missing = [f"{name} {p.opts[0]}" for name, cmd in {"": main, **main.commands}.items()
               for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.help]
    assert missing == []


@pytest.mark.slow
def test_serve_against_an_unreachable_bus_retries_in_short_lines_and_stops_on_sigterm(
        tmp_path: Path, closed_port: int) -> None:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([SCRIPT, "serve", "--resource-id", "r1", "--work-dir", str(tmp_path / "jobs"),
                                 "--mongo-url", f"mongodb://127.0.0.1:{closed_port}"],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 60
            while len(re.findall(r"retrying in \d+ s", log.read_text())) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert took < 3.0, (took, text)  # ~0.2 s on a quiet machine; it used to take 10 s
    lines = text.strip().splitlines()
    assert all(len(line) < 300 for line in lines), text  # no topology dumps
    assert "Traceback" not in text and "Topology Description" not in text
    assert sum("stopping" in line for line in lines) == 1, text
    waits = [int(w) for w in re.findall(r"job bus of 'r1' unavailable \(.*Connection refused\); retrying in (\d+) s", text)]
    assert waits[:2] == [1, 2], text  # growing waits


def test_an_outage_is_described_in_one_short_line_with_growing_waits(closed_port: int) -> None:
    import pymongo

    from hither_remote.outage import MAX_WAIT, Outage, describe

    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{closed_port}", serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(pymongo.errors.ServerSelectionTimeoutError) as info:
            client.admin.command("ping")
    finally:
        client.close()
    text = describe(info.value)
    assert len(str(info.value)) > 200 and len(text) < 200 and "\n" not in text, text  # the dump is gone
    assert text.startswith("ServerSelectionTimeoutError: ") and "Connection refused" in text
    outage = Outage(bus=None, name="r1")
    waits = [outage.failed(info.value) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, MAX_WAIT, MAX_WAIT, MAX_WAIT] and outage.down
    outage.recovered()
    assert not outage.down and outage.failed(info.value) == 1


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from hither_remote import bus as bus_module
    from hither_remote.cli import main

    def interrupted(self, *args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bus_module.Bus, "resource_records", interrupted)  # as if while it waits for the bus
    r = CliRunner().invoke(main, ["status", "--connect-timeout", "1"])
    assert r.exit_code == 130, r.output
    assert r.output.strip() == "Error: interrupted (Ctrl-C) before the command finished: run it again to finish"
