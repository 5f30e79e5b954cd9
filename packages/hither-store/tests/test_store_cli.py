"""The ``hither-store`` command, through click's CliRunner and once as a real process."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

import hither as hi
from hither_store import Store
from hither_store.cli import main


def run(*args: str, input: "str | None" = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def cli_args(store_args):
    """The leading ``--url``/``--storage-options`` arguments for the store under test."""
    url, options = store_args
    return ["--url", url] + (["--storage-options", json.dumps(options)] if options else [])


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text("sample content\n")
    return path


def test_put_get_stats_verify(cli_args, sample, tmp_path):
    put = run(*cli_args, "put", str(sample))
    assert put.exit_code == 0, put.output
    uri = put.output.strip()
    assert uri == hi.File(str(sample)).uri

    path = run(*cli_args, "get", uri)
    assert path.exit_code == 0, path.output
    with open(path.output.strip()) as f:
        assert f.read() == "sample content\n"

    dest_file = tmp_path / "copy.txt"
    got = run(*cli_args, "get", uri, str(dest_file))
    assert got.exit_code == 0 and dest_file.read_text() == "sample content\n"
    dest_dir = tmp_path / "out"
    dest_dir.mkdir()
    got = run(*cli_args, "get", uri, str(dest_dir))
    assert got.exit_code == 0 and (dest_dir / "sample.txt").read_text() == "sample content\n"
    assert os.listdir(dest_dir) == ["sample.txt"]  # no temporary file left behind

    stats = run(*cli_args, "stats")
    assert stats.exit_code == 0 and "blobs: 1" in stats.output and f"bytes: {len('sample content') + 1}" in stats.output
    as_json = json.loads(run(*cli_args, "stats", "--json").output)
    assert (as_json["count"], as_json["bytes"]) == (1, 15)

    verify = run(*cli_args, "verify")
    assert verify.exit_code == 0, verify.output
    assert "1 ok, 0 bad, 0 missing" in verify.output
    verify_one = run(*cli_args, "verify", uri)
    assert verify_one.exit_code == 0 and f"ok {uri}" in verify_one.output


def test_put_several_files(cli_args, tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.txt"
        p.write_text(f"file {i}")
        paths.append(str(p))
    out = run(*cli_args, "put", *paths)
    assert out.exit_code == 0
    assert out.output.split() == [hi.File(p).uri for p in paths]
    assert run(*cli_args, "put", "--name", "x", *paths).exit_code == 2  # --name needs one FILE


def test_verify_reports_a_bad_blob_with_exit_code_1(cli_args, store, sample):
    uri = run(*cli_args, "put", str(sample)).output.strip()
    good_uri = run(*cli_args, "put", __file__).output.strip()
    digest = uri[7:47]
    if store.is_local:
        path = store.local_blobs.path(digest)
        os.chmod(path, 0o644)
        with open(path, "w") as f:
            f.write("tampered")
    else:
        store.fs.pipe_file(store._key(digest), b"tampered")
    result = run(*cli_args, "verify")
    assert result.exit_code == 1
    assert f"BAD sha1://{digest}: " in result.output and "1 ok, 1 bad" in result.output
    assert run(*cli_args, "verify", good_uri).exit_code == 0
    removed = run(*cli_args, "verify", "--remove-bad")
    assert removed.exit_code == 1 and "(removed)" in removed.output
    assert run(*cli_args, "verify").exit_code == 0
    assert run(*cli_args, "put", str(sample)).output.strip() == uri
    assert run(*cli_args, "verify", uri).exit_code == 0


def test_errors_are_reported_with_exit_code_1(cli_args):
    missing = "sha1://" + "0" * 40 + "/gone.txt"
    got = run(*cli_args, "get", missing)
    assert got.exit_code == 1 and "holds no content" in got.output
    verify = run(*cli_args, "verify", missing)
    assert verify.exit_code == 1 and f"MISSING {missing}" in verify.output
    bad = run(*cli_args, "get", "sha1://../../etc/passwd")
    assert bad.exit_code == 1 and "bad sha1" in bad.output


def test_get_into_a_missing_folder(cli_args, sample, tmp_path):
    uri = run(*cli_args, "put", str(sample)).output.strip()
    out = run(*cli_args, "get", uri, str(tmp_path / "no" / "such" / "dir" / "x.txt"))
    assert out.exit_code == 1 and "cannot write" in out.output


def test_bad_options(tmp_path):
    out = run("--url", str(tmp_path), "--storage-options", "[1]", "stats")
    assert out.exit_code == 2 and "JSON object" in out.output
    out = run("--url", "nope://x", "stats")
    assert out.exit_code == 1 and "cannot open the store" in out.output


def test_a_store_that_is_down_is_an_error_message_not_a_traceback(sample, monkeypatch):
    pytest.importorskip("s3fs")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "hither-test")
    options = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
               "config_kwargs": {"retries": {"max_attempts": 1}}}
    args = ["--url", "s3://hither-down/x", "--storage-options", json.dumps(options)]
    for command in (["stats"], ["put", str(sample)], ["verify"]):
        out = run(*args, *command)
        assert out.exit_code == 1, out.output
        assert "Check that the store s3://hither-down/x is reachable" in out.output
        assert "Traceback" not in out.output


def test_default_url_comes_from_the_environment(tmp_path, monkeypatch, sample):
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "from-env"))
    uri = run("put", str(sample)).output.strip()
    assert Store(str(tmp_path / "from-env")).exists(uri)


def _console_script() -> str:
    candidate = os.path.join(os.path.dirname(sys.executable), "hither-store")
    found = candidate if os.path.exists(candidate) else shutil.which("hither-store")
    assert found, "the hither-store console script is not installed next to this Python"
    return found


@pytest.mark.parametrize("backend", ["local"])
def test_console_script_as_a_real_process(store, sample, tmp_path):
    exe = _console_script()
    env = dict(os.environ, HITHER_STORE_URL=store.url)
    put = subprocess.run([exe, "put", str(sample)], capture_output=True, text=True, env=env, timeout=60)
    assert put.returncode == 0, put.stderr
    uri = put.stdout.strip()
    assert uri == hi.File(str(sample)).uri and store.exists(uri)
    ok = subprocess.run([exe, "verify"], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "1 ok" in ok.stdout, ok.stderr
    path = store.get_path(uri)
    os.chmod(path, 0o644)
    with open(path, "a") as f:
        f.write("!")
    bad = subprocess.run([exe, "--url", store.url, "verify"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "BAD" in bad.stdout
    assert "--remove-bad" in bad.stderr


# -- a newcomer's first hour (issue 22): durations, empty listings, errors without tracebacks


def _real(*args: str, env: "dict | None" = None, **kw) -> "subprocess.CompletedProcess[str]":
    """The hither-store console script as a real process."""
    return subprocess.run([_console_script(), *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})), **kw)


@pytest.mark.parametrize("age", ["1d12h", "90s", "15m", "2w"])
def test_prune_takes_the_one_duration_syntax(tmp_path, age):
    out = _real("--url", str(tmp_path / "s"), "prune", "--older-than", age, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would remove 0 blobs" in out.stdout and "Traceback" not in out.stderr


def test_prune_with_a_bad_duration_is_one_usage_error(tmp_path):
    out = _real("--url", str(tmp_path / "s"), "prune", "--older-than", "1x")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    error = [ln for ln in out.stderr.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1
    assert "--older-than" in error[0] and "'1x'" in error[0] and "1d12h" in error[0]


@pytest.mark.parametrize("backend", ["local"])
def test_a_bare_number_is_refused_and_removes_nothing(store, sample):
    uri = store.put_file(str(sample))
    path = store.local_blobs.path(uri[7:47])
    old = os.stat(path).st_mtime - 120
    os.utime(path, (old, old))
    url = ["--url", store.url]
    # "30" meant 30 days here before durations were one syntax; now it names no unit
    refused = run(*url, "prune", "--older-than", "60")
    assert refused.exit_code == 2 and "no unit" in refused.output and store.exists(uri)
    assert "would remove 0 blobs" in run(*url, "prune", "--older-than", "180s", "--dry-run").output
    assert "removed 1 blobs" in run(*url, "prune", "--older-than", "60s").output
    assert not store.exists(uri)


def test_prune_help_documents_the_syntax():
    text = run("prune", "--help").output
    assert "units s, m, h, d, w" in " ".join(text.split()) and "1d12h" in text


def test_verify_names_blobs_by_a_valid_uri_and_says_when_the_store_is_empty(tmp_path, sample):
    url = ["--url", str(tmp_path / "fresh")]
    empty = _real(*url, "verify")
    assert empty.returncode == 0 and "Traceback" not in empty.stderr
    assert "holds no content" in empty.stderr and "holds no content" not in empty.stdout
    assert len(empty.stderr.strip().splitlines()) == 1
    uri = run(*url, "put", str(sample)).output.strip()
    out = run(*url, "verify").output.splitlines()
    digest = uri[7:47]
    assert out[0] == f"ok sha1://{digest}"  # no empty name after a trailing slash
    assert run(*url, "verify", out[0].split()[1]).exit_code == 0


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "/srv/store/sha1"),
                                   OSError(5, "Input/output error")])
def test_an_unreadable_folder_is_one_line(tmp_path, monkeypatch, error):
    def fail(self, *a, **k):
        raise error

    monkeypatch.setattr(Store, "stats", fail)
    monkeypatch.setattr(Store, "iter_blobs", fail)
    for command in ("stats", "verify"):
        res = CliRunner().invoke(main, ["--url", str(tmp_path), command])
        assert res.exit_code == 1 and res.exception is not None
        assert isinstance(res.exception, SystemExit), res.exception
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
        assert error.strerror in res.output and "readable and writable" in res.output


def test_an_unexpected_failure_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    def boom(self):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(Store, "describe", boom)
    res = CliRunner().invoke(main, ["--url", str(tmp_path), "stats"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception
    assert "something nobody expected" in res.output and "-v shows the traceback" in res.output


def test_ctrl_c_is_a_message_and_exit_code_130(tmp_path, monkeypatch):
    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "put_file", interrupted)
    sample = tmp_path / "a.txt"
    sample.write_text("a")
    res = CliRunner().invoke(main, ["--url", str(tmp_path / "s"), "put", str(sample)])
    assert res.exit_code == 130 and "interrupted (Ctrl-C)" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_ctrl_c_of_a_real_process(tmp_path):
    """SIGINT while the command works: one line, exit code 130, no traceback."""
    import signal
    import time

    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # put blocks reading it until it is interrupted
    proc = subprocess.Popen([_console_script(), "--url", str(tmp_path / "s"), "put", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in err


def test_missing_s3fs_is_an_install_hint_quoted_for_zsh(tmp_path):
    """hither-store without its [s3] extra: a fake ``s3fs`` that fails to import comes first
    on the path of the real console script."""
    fake = tmp_path / "no-s3fs" / "s3fs"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 's3fs'\")\n")
    out = _real("--url", "s3://bucket/prefix", "stats", env={"PYTHONPATH": str(fake.parent)})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "pip install 'hither-store[s3]'" in out.stderr
