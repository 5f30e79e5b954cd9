"""The hither-cache command, through click's CliRunner and once as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
from click.testing import CliRunner

from hither.models import ErrorInfo, JobStatus, RuntimeInfo
from hither.testing.cache_conformance import entry, job_hash
from hither.plugins.cli import parse_duration
from hither_cache.cli import main
from hither_cache.file_backend import FileCacheBackend
from hither_cache.mongo_backend import MongoCacheBackend

DAY = 86400.0


def _fill(backend) -> None:
    now = time.time()
    backend.put(entry("old", result={"a": np.arange(1000.0)}, function_name="add",
                      created_at=now - 10 * DAY,
                      runtime_info=RuntimeInfo(stdout="adding\n", host="h1", start_time=1.0, end_time=3.5)))
    backend.put(entry("new", result=(1, "two"), function_name="mul", created_at=now - 3600))
    backend.put(entry("bad", status=JobStatus.ERROR, function_name="add", created_at=now - 2 * DAY,
                      error=ErrorInfo(type_name="ValueError", message="bad input",
                                      traceback="Traceback...\nValueError: bad input\n")))


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    path = str(tmp_path / "jc")
    _fill(FileCacheBackend(path))
    return path


def run(*args: str, input: str = None):
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result


@pytest.mark.parametrize("text,seconds", [("7d", 7 * DAY), ("12h", 43200), ("1d12h", 1.5 * DAY),
                                          ("90m", 5400), ("30s", 30), ("2w", 14 * DAY), ("0.5h", 1800)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7x", "7d garbage", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_stats(cache_dir: str) -> None:
    r = run("--path", cache_dir, "stats")
    assert r.exit_code == 0, r.output
    assert "entries: 3" in r.output and "error 1" in r.output and "finished 2" in r.output
    assert "add 0.1.0" in r.output
    data = json.loads(run("--path", cache_dir, "stats", "--json").output)
    assert data["entries"] == 3 and data["by_function"] == {"add 0.1.0": 2, "mul 0.1.0": 1}
    assert data["bytes"] > 8000


def test_ls(cache_dir: str) -> None:
    r = run("--path", cache_dir, "ls")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [job_hash("new"), job_hash("bad"), job_hash("old")]
    assert "mul 0.1.0" in lines[0] and "error" in lines[1]
    only_add = run("--path", cache_dir, "ls", "--function", "add", "--limit", "1").output
    assert only_add.split()[0] == job_hash("bad") and len(only_add.strip().splitlines()) == 1
    rows = [json.loads(x) for x in run("--path", cache_dir, "ls", "--json").output.splitlines()]
    assert {r["job_hash"] for r in rows} == {job_hash(x) for x in ("old", "new", "bad")}


def test_show(cache_dir: str) -> None:
    r = run("--path", cache_dir, "show", job_hash("old")[:8])
    assert r.exit_code == 0, r.output
    assert job_hash("old") in r.output and "add 0.1.0" in r.output and "finished" in r.output
    assert "elapsed:    2.500 s" in r.output and "adding" in r.output and "h1" in r.output
    assert "shape=(1000,)" in r.output
    r = run("--path", cache_dir, "show", job_hash("bad"))
    assert "ValueError: bad input" in r.output and "--- traceback ---" in r.output
    r = run("--path", cache_dir, "show", "ffffffffff")
    assert r.exit_code == 1 and "no entry" in r.output


def test_show_rejects_what_is_not_a_hash(cache_dir: str) -> None:
    for bad in ("z" * 40, "ab/../cd"):
        r = run("--path", cache_dir, "show", bad)
        assert r.exit_code == 2 and "is not a job hash" in r.output, r.output


def test_clear_older_than_then_all(cache_dir: str) -> None:
    r = run("--path", cache_dir, "clear", "--older-than", "7d", "--yes")
    assert r.exit_code == 0 and "deleted 1 entry" in r.output
    assert sorted(FileCacheBackend(cache_dir).iter_hashes()) == sorted([job_hash("new"), job_hash("bad")])
    r = run("--path", cache_dir, "clear", input="n\n")  # asks first
    assert r.exit_code == 1 and "Aborted" in r.output
    r = run("--path", cache_dir, "clear", input="y\n")
    assert r.exit_code == 0 and "deleted 2 entries" in r.output
    assert list(FileCacheBackend(cache_dir).iter_hashes()) == []


def test_usage_errors(cache_dir: str, tmp_path: Path) -> None:
    r = run("stats")
    assert r.exit_code == 2 and "exactly one of --path" in r.output
    r = run("--path", cache_dir, "--mongo-url", "mongodb://x", "stats")
    assert r.exit_code == 2
    r = run("--path", str(tmp_path / "nope"), "stats")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = run("--path", cache_dir, "clear", "--older-than", "soon")
    assert r.exit_code == 2 and "not a duration" in r.output


def test_mongo_cache(mongo_db) -> None:
    _fill(MongoCacheBackend(mongo_db))
    base = ["--mongo-url", mongo_db.mongo_url, "--database", mongo_db.database]
    r = run(*base, "stats")
    assert r.exit_code == 0 and "entries: 3" in r.output and "MongoDB" in r.output
    r = run(*base, "ls")
    assert r.output.split()[0] == job_hash("new")
    assert "bad input" in run(*base, "show", job_hash("bad")[:10]).output
    assert "deleted 1 entry" in run(*base, "clear", "--older-than", "1w", "-y").output
    assert "entries: 2" in run(*base, "stats").output


def test_unreachable_mongo_is_a_clear_error(dead_mongo_url: str) -> None:
    pytest.importorskip("pymongo")
    r = run("--mongo-url", dead_mongo_url, "--retry-timeout", "0.5", "stats")
    assert r.exit_code == 1
    assert "did not answer" in r.output and dead_mongo_url in r.output
    assert "Traceback" not in r.output


def test_as_a_real_command(cache_dir: str) -> None:
    exe = Path(sys.executable).with_name("hither-cache")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "hither_cache.cli"]
    proc = subprocess.run(cmd + ["--path", cache_dir, "ls"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 3 and job_hash("new") in proc.stdout
    proc = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
    assert "0.1.0" in proc.stdout


@pytest.fixture
def immutable(tmp_path: Path):
    """chattr +i on folders (made writable again at the end): a real read-only place even for
    root. Skips where chattr is missing or the file system has no such flag."""
    import shutil

    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and chattr(1)")
    done: List[str] = []

    def make(path: str) -> None:
        r = subprocess.run(["chattr", "+i", path], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {r.stderr.strip()}")
        done.append(path)

    yield make
    for path in reversed(done):
        subprocess.run(["chattr", "-i", path], timeout=30)


def test_clear_on_a_read_only_folder_is_one_clear_line(cache_dir: str, immutable) -> None:
    for shard in sorted(os.listdir(cache_dir)):
        immutable(os.path.join(cache_dir, shard))
    immutable(cache_dir)
    for args in (["clear", "--yes"], ["clear", "--older-than", "1d", "--yes"]):
        r = run("--path", cache_dir, *args)
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert "cannot delete" in r.output and "Operation not permitted" in r.output
        assert "make the folder writable" in r.output
    assert len(list(FileCacheBackend(cache_dir).iter_hashes())) == 3  # nothing lost


def test_ls_limit_must_not_be_negative(cache_dir: str) -> None:
    r = run("--path", cache_dir, "ls", "--limit", "-1")
    assert r.exit_code == 2 and "--limit" in r.output
    r = run("--path", cache_dir, "ls", "--limit", "0")
    assert r.exit_code == 0 and r.output == ""


@pytest.mark.parametrize("huge", ["99999999999999999999d", "9" * 400 + "w", "60000w"])
def test_clear_older_than_a_huge_duration_is_a_clear_error(cache_dir: str, huge: str) -> None:
    r = run("--path", cache_dir, "clear", "--older-than", huge, "--yes")
    assert r.exit_code == 2 and "before 1970" in r.output and "Traceback" not in r.output
    assert len(list(FileCacheBackend(cache_dir).iter_hashes())) == 3


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "1e30", "1e400"])
def test_retry_timeout_must_be_a_finite_wait(bad: str) -> None:
    """nan/inf/1e30 made the command wait forever on an unreachable server."""
    r = run("--mongo-url", "mongodb://127.0.0.1:1", "--retry-timeout", bad, "stats")
    assert r.exit_code == 2 and "--retry-timeout" in r.output and "out of range" in r.output


@pytest.mark.parametrize("option", ["retry_timeout", "cooldown", "connect_timeout"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 1e30, "10"])
def test_mongo_backend_timeouts_are_checked(option: str, bad: object) -> None:
    pytest.importorskip("pymongo")
    from hither.errors import ConfigError
    from hither.models import Database

    with pytest.raises(ConfigError, match=option):
        MongoCacheBackend(Database(mongo_url="mongodb://127.0.0.1:1", database="x"), **{option: bad})


# -- a newcomer's first hour (issue 22): durations, empty listings, errors without tracebacks


def _real(*args: str, env: "dict | None" = None, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """The hither-cache console script as a real process."""
    exe = Path(sys.executable).with_name("hither-cache")
    assert exe.exists(), "the hither-cache console script is not installed next to this Python"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _one_error_line(text: str) -> str:
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, text
    return errors[0]


def test_older_than_takes_units_and_compounds_and_refuses_a_bare_number(cache_dir: str) -> None:
    r = run("--path", cache_dir, "clear", "--older-than", "2d12h", "--yes")
    assert r.exit_code == 0 and "deleted 1 entry" in r.output, r.output  # the 10-day-old one
    r = run("--path", cache_dir, "clear", "--older-than", "7200", "--yes")  # no unit: refused, nothing deleted
    assert r.exit_code == 2 and "no unit" in r.output and "7200s" in r.output, r.output
    r = run("--path", cache_dir, "clear", "--older-than", "120m", "--yes")  # 2 h: the 2-day-old one
    assert r.exit_code == 0 and "deleted 1 entry" in r.output, r.output
    assert list(FileCacheBackend(cache_dir).iter_hashes()) == [job_hash("new")]


def test_a_bad_duration_is_one_line_naming_option_text_and_syntax(cache_dir: str) -> None:
    proc = _real("--path", cache_dir, "clear", "--older-than", "7 days", "--yes")
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "--older-than" in line and "'7 days'" in line and "1d12h" in line
    assert "units s, m, h, d, w" in " ".join(run("clear", "--help").output.split())


def test_an_empty_listing_says_so_on_stderr(tmp_path: Path) -> None:
    empty = str(tmp_path / "empty")
    FileCacheBackend(empty)
    for extra in ([], ["--json"], ["--function", "nope"]):
        proc = _real("--path", empty, "ls", *extra)
        assert proc.returncode == 0 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith("no entries") and len(proc.stderr.strip().splitlines()) == 1
    assert "of function 'nope'" in proc.stderr


def test_unreachable_mongo_names_the_cli_flag_in_two_lines_at_most(dead_mongo_url: str) -> None:
    pytest.importorskip("pymongo")
    proc = _real("--mongo-url", dead_mongo_url, "--retry-timeout", "0.5", "ls")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and len(proc.stderr) < 600, proc.stderr
    assert "--retry-timeout" in proc.stderr and "retry_timeout=" not in proc.stderr
    assert "Topology" not in proc.stderr


def test_a_bad_retry_timeout_names_the_flag() -> None:
    for bad, says in (("nan", "out of range"), ("soon", "not a number of seconds")):
        line = _one_error_line(run("--mongo-url", "mongodb://127.0.0.1:1", "--retry-timeout", bad,
                                   "ls").output)
        assert "--retry-timeout" in line and "retry_timeout" not in line and says in line


@pytest.mark.timeout(30)
def test_a_mongo_url_that_is_not_one_is_a_usage_error_at_once() -> None:
    start = time.monotonic()
    proc = _real("--mongo-url", "localhost-27017", "ls")
    assert proc.returncode == 2 and time.monotonic() - start < 20
    line = _one_error_line(proc.stderr)
    assert "--mongo-url" in line and "mongodb://HOST" in line


def test_missing_pymongo_is_an_install_hint_quoted_for_zsh(tmp_path: Path) -> None:
    """hither-cache without its [mongo] extra: a fake ``pymongo`` that fails to import comes
    first on the path of the real console script."""
    fake = tmp_path / "no-pymongo" / "pymongo"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'pymongo'\")\n")
    proc = _real("--mongo-url", "mongodb://127.0.0.1:1", "ls", env={"PYTHONPATH": str(fake.parent)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("Error: the MongoDB job cache needs pymongo, which is not "
                                   "installed: pip install 'hither-cache[mongo]'")


def test_an_unexpected_failure_is_one_line(cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self):
        raise RuntimeError("nobody expected this")

    monkeypatch.setattr(FileCacheBackend, "iter_summaries", boom)
    r = CliRunner().invoke(main, ["--path", cache_dir, "ls"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert _one_error_line(r.output).endswith("-v shows the traceback (please report it with that output)")


def test_ctrl_c_is_one_line_and_exit_code_130(cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(FileCacheBackend, "iter_summaries", interrupted)
    r = CliRunner().invoke(main, ["--path", cache_dir, "stats"])
    assert r.exit_code == 130 and "interrupted (Ctrl-C)" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_ctrl_c_of_a_real_process_waiting_for_mongo(dead_mongo_url: str) -> None:
    pytest.importorskip("pymongo")
    import signal

    exe = Path(sys.executable).with_name("hither-cache")
    proc = subprocess.Popen([str(exe), "--mongo-url", dead_mongo_url, "--retry-timeout", "40", "ls"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # past the imports: retrying the server
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in err


@pytest.mark.parametrize("command", ["ls", "stats", "show"])
def test_an_unreadable_cache_folder_is_one_line(cache_dir: str, monkeypatch: pytest.MonkeyPatch,
                                               command: str) -> None:
    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", cache_dir)

    monkeypatch.setattr(FileCacheBackend, "iter_summaries", denied)
    monkeypatch.setattr(FileCacheBackend, "iter_hashes", denied)
    r = CliRunner().invoke(main, ["--path", cache_dir, command] + (["ab"] if command == "show" else []))
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    line = _one_error_line(r.output)
    assert "Permission denied" in line and cache_dir in line and "this user" in line
