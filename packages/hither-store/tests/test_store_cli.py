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
    assert f"BAD sha1://{digest}/" in result.output and "1 ok, 1 bad" in result.output
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
