"""``hi.File`` with hither-store and the job cache (hither-core + hither-store + hither-cache):
content kept in the default store, cache hits after the source is deleted, pruning.

Functions count their runs by appending to the file named by $FSS_CALLS (not an argument,
so it does not change the job hash).
"""
from __future__ import annotations

import hashlib
import os
import time

import pytest
from click.testing import CliRunner

import hither as hi
from hither.content.folder import builtin_folder, file_store
from hither.content.stores import default_store, set_default_store
from hither.plugins.cli import parse_duration
from hither_store import Store
from hither_store.cli import main as store_cli
from hither_store.prune import parse_size, prune


def _count() -> None:
    with open(os.environ["FSS_CALLS"], "a") as fh:
        fh.write("x")


@hi.function("fss_read", "0.1.0")
def fss_read(path):
    _count()
    with open(path) as fh:
        return fh.read()


@hi.function("fss_make", "0.1.0")
def fss_make(text):
    _count()
    with hi.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "made.txt")
        with open(path, "w") as fh:
            fh.write(text)
        return hi.File(path)


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("FSS_CALLS", str(tmp_path / "calls"))
    set_default_store(None)
    yield
    set_default_store(None)


def calls(tmp_path) -> int:
    p = tmp_path / "calls"
    return len(p.read_text()) if p.exists() else 0


@pytest.fixture(params=["default", "parallel"])
def handler(request):
    if request.param == "default":
        yield None
        return
    h = hi.ParallelJobHandler(num_workers=2)
    yield h
    h.shutdown(wait=False)


def test_file_content_goes_to_the_default_store(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("a,b\n")
    f = hi.File(str(src))
    store = default_store()
    assert isinstance(store, Store) and store.url == str(tmp_path / "store")
    assert file_store() is store and store.exists(f.uri)
    assert f.resolve() == store.get_path(f.uri)


def test_cache_hits_after_the_source_is_deleted(handler, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("cached input")
    f = hi.File(str(src))
    with hi.Config(job_handler=handler, job_cache=hi.JobCache(path=str(tmp_path / "cache"))):
        assert fss_read.run(path=f).wait(60) == "cached input"
        assert calls(tmp_path) == 1
        os.remove(src)
        job = fss_read.run(path=f)
        assert job.wait(60) == "cached input" and job.get_runtime_info().cached
        again = fss_read.run(path=hi.File.from_uri(f.uri))  # the same content, by URI
        assert again.wait(60) == "cached input" and again.get_runtime_info().cached
    assert calls(tmp_path) == 1


def test_cached_file_result_outlives_the_jobs_temporary_folder(handler, tmp_path):
    cache = hi.JobCache(path=str(tmp_path / "cache"))
    with hi.Config(job_handler=handler, job_cache=cache):
        first = fss_make.run(text="kept").wait(60)
        second_job = fss_make.run(text="kept")
        second = second_job.wait(60)
        assert second_job.get_runtime_info().cached
        assert fss_read.run(path=second).wait(60) == "kept"
    assert second == first and second.read_text() == "kept"
    assert calls(tmp_path) == 2  # one fss_make, one fss_read


def test_pruned_content_makes_the_cached_result_a_miss(tmp_path):
    cache = hi.JobCache(path=str(tmp_path / "cache"))
    with hi.Config(job_cache=cache):
        f = fss_make.run(text="pruned").wait(60)
        report = prune(default_store(), older_than=0)
        assert report.removed == 1 and report.kept == 0
        with pytest.raises(FileNotFoundError):
            hi.File.from_uri(f.uri).resolve()
        job = fss_make.run(text="pruned")
        assert job.wait(60).read_text() == "pruned" and not job.get_runtime_info().cached
    assert calls(tmp_path) == 2


def test_prune_by_age_and_size_keeps_what_was_used_recently(tmp_path):
    store = default_store()
    files = []
    for i, age_days in enumerate((40, 20, 0)):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(bytes([i]) * 1000)
        files.append(hi.File(str(p)))
        t = time.time() - age_days * 86400
        os.utime(store.get_path(files[-1].uri), (t, t))
    assert prune(store, older_than=30 * 86400, dry_run=True).removed == 1
    assert all(store.exists(f.uri) for f in files)  # a dry run removes nothing
    report = prune(store, older_than=30 * 86400)
    assert (report.removed, report.freed_bytes, report.kept) == (1, 1000, 2)
    assert not store.exists(files[0].uri) and store.exists(files[1].uri)
    hi.File(str(tmp_path / "f1.bin"))  # made again: used now, so the size limit keeps it
    report = prune(store, max_bytes=1500)
    assert report.removed == 1 and report.kept_bytes == 1000
    assert store.exists(files[1].uri) and not store.exists(files[2].uri)


def test_prune_command(tmp_path):
    store = default_store()
    p = tmp_path / "old.txt"
    p.write_text("old")
    f = hi.File(str(p))
    t = time.time() - 3 * 86400
    os.utime(store.get_path(f.uri), (t, t))
    partial = os.path.join(store.root, "tmp", "123-dead.part")
    with open(partial, "w") as fh:
        fh.write("half")
    os.utime(partial, (t, t))
    url = ["--url", store.url]
    res = CliRunner().invoke(store_cli, url + ["prune", "--older-than", "2d", "--dry-run"])
    assert res.exit_code == 0 and "would remove 1 blobs" in res.output and store.exists(f.uri)
    res = CliRunner().invoke(store_cli, url + ["prune", "--older-than", "2d"])
    assert res.exit_code == 0, res.output
    assert "removed 1 blobs" in res.output and "1 partial writes" in res.output
    assert not store.exists(f.uri) and not os.path.exists(partial)
    res = CliRunner().invoke(store_cli, url + ["prune"])
    assert res.exit_code != 0 and "--older-than" in res.output
    res = CliRunner().invoke(store_cli, url + ["prune", "--max-size", "lots"])
    assert res.exit_code != 0 and "not a size" in res.output


def test_prune_argument_parsing():
    # one duration syntax for hither-store and hither-cache; a bare number names no unit
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400
    with pytest.raises(ValueError, match="no unit"):
        parse_duration("30")
    assert parse_size("50G") == parse_size("50GiB") == 50 * 2**30 and parse_size("2048") == 2048
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_store_put_file_never_links_the_source(tmp_path):
    """On a file system without copy-on-write clones (ext4 here) put_file copies; either way
    an in-place edit of the source never reaches the stored content."""
    store = Store(str(tmp_path / "own-store"))
    src = tmp_path / "src.bin"
    src.write_bytes(b"original")
    uri = store.put_file(src)
    assert not os.path.samefile(store.get_path(uri), src)
    with open(src, "r+b") as fh:
        fh.write(b"ORIGINAL")
    assert open(store.get_path(uri), "rb").read() == b"original" and store.verify(uri)


def test_non_local_default_store_keeps_files_in_the_builtin_folder(tmp_path, monkeypatch):
    """With a remote default store (memory:// stands in for s3:// here) a File's content
    stays on this machine, in the built-in content folder; content that only the remote
    store holds is fetched through it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HITHER_STORE_URL", "memory://fss-remote")
    remote = default_store()
    assert not remote.is_local
    src = tmp_path / "local.txt"
    src.write_text("stays local")
    f = hi.File(str(src))
    assert file_store() is builtin_folder()
    assert f.resolve().startswith(str(tmp_path / "xdg" / "hither" / "store"))
    assert not remote.exists(f.uri)
    uri = remote.put_bytes(b"only remote", name="r.txt")
    assert hi.File.from_uri(uri).read_text() == "only remote"
    assert hashlib.sha1(b"only remote").hexdigest() in uri
