"""The file backend: conformance suite plus layout, atomicity and damage handling."""
from __future__ import annotations

import json
import logging
import mmap
import os
import time
from pathlib import Path

import numpy as np
import pytest

from hither.plugins import registry
from hither.models import JobStatus
from hither.testing.cache_conformance import CacheBackendConformance, entry, job_hash
from hither_cache.file_backend import FileCacheBackend


class TestFileConformance(CacheBackendConformance):
    stress_array_bytes = 3 << 19  # 1.5 MB: memory-mapped on read

    @pytest.fixture
    def cache_spec(self, tmp_path: Path):
        return FileCacheBackend, {"path": str(tmp_path / "jc")}


@pytest.fixture
def backend(tmp_path: Path) -> FileCacheBackend:
    return FileCacheBackend(tmp_path / "jc")


def _mapped(a: np.ndarray) -> bool:
    base = a
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


def test_registered_as_file_cache(tmp_path: Path) -> None:
    cls = registry.load("caches", "file")
    assert cls is FileCacheBackend
    assert isinstance(cls(path=str(tmp_path)), FileCacheBackend)


def test_sharded_layout_with_npy_beside_entry(backend: FileCacheBackend) -> None:
    big = np.arange(1 << 18, dtype=np.float64)  # 2 MB
    e = entry("layout", result={"big": big, "small": np.arange(3)})
    backend.put(e)
    d = backend.root / e.job_hash[:2] / e.job_hash
    assert sorted(p.name for p in d.iterdir()) == ["a0.npy", "a1.npy", "entry.json"]
    doc = json.loads((d / "entry.json").read_text())
    assert (d / "entry.json").stat().st_size < 2000  # arrays are not inside the JSON
    assert doc["result"]["big"] == {"_hither": "ndarray", "ref": 0}
    assert np.array_equal(np.load(d / "a0.npy"), big)
    # nothing else is left in the shard: no temporary folders
    assert [p.name for p in d.parent.iterdir()] == [e.job_hash]


def test_large_arrays_are_memory_mapped_small_ones_read(backend: FileCacheBackend) -> None:
    big = np.arange(1 << 18, dtype=np.float64)
    backend.put(entry("mm", result=(big, np.arange(10))))
    got = backend.get(job_hash("mm"))
    assert got is not None
    a, b = got.result
    assert type(a) is np.ndarray and _mapped(a) and a.flags.writeable
    assert not _mapped(b)
    a[0] = 42.0  # copy-on-write: the file keeps its content
    again = backend.get(job_hash("mm"))
    assert again is not None and again.result[0][0] == 0.0


@pytest.mark.parametrize("damage", ["truncated_json", "garbage_json", "empty_json", "missing_json",
                                    "truncated_npy", "missing_npy", "wrong_hash", "not_a_folder"])
def test_damaged_entry_is_a_miss_with_warning_and_is_replaced(
        backend: FileCacheBackend, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    e = entry("dmg", result={"a": np.arange(1000.0)})
    backend.put(e)
    d = backend.entry_dir(e.job_hash)
    ej, npy = d / "entry.json", d / "a0.npy"
    if damage == "truncated_json":
        ej.write_bytes(ej.read_bytes()[:40])
    elif damage == "garbage_json":
        ej.write_bytes(os.urandom(300))
    elif damage == "empty_json":
        ej.write_bytes(b"")
    elif damage == "missing_json":
        ej.unlink()
    elif damage == "truncated_npy":
        npy.write_bytes(npy.read_bytes()[:500])
    elif damage == "missing_npy":
        npy.unlink()
    elif damage == "wrong_hash":
        ej.write_text(ej.read_text().replace(e.job_hash, job_hash("other")))
    elif damage == "not_a_folder":
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
        d.write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="hither.cache"):
        assert backend.get(e.job_hash) is None
    assert any(e.job_hash in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    backend.put(e)
    got = backend.get(e.job_hash)
    assert got is not None and np.array_equal(got.result["a"], np.arange(1000.0))


def test_unreadable_entries_show_in_summaries_and_clear(backend: FileCacheBackend) -> None:
    backend.put(entry("ok", result=1))
    backend.put(entry("bad", result=2))
    (backend.entry_dir(job_hash("bad")) / "entry.json").write_text("{")
    by_hash = {s.job_hash: s for s in backend.iter_summaries()}
    assert by_hash[job_hash("ok")].problem is None and by_hash[job_hash("ok")].size_bytes > 0
    assert by_hash[job_hash("bad")].problem
    # an unreadable entry is as old as its files
    assert backend.clear(older_than=time.time() - 3600) == 0
    assert backend.clear(older_than=time.time() + 60) == 2
    backend.put(entry("ok", result=1))
    backend.put(entry("bad", result=2))
    (backend.entry_dir(job_hash("bad")) / "entry.json").write_text("{")
    assert backend.clear() == 2


def test_clear_removes_stale_leftovers_of_dead_writers(backend: FileCacheBackend) -> None:
    backend.put(entry("x", result=1))
    shard = backend.entry_dir(job_hash("x")).parent
    stale, fresh = shard / f".tmp-{job_hash('x')}-dead", shard / f".tmp-{job_hash('x')}-busy"
    for p in (stale, fresh):
        p.mkdir()
        (p / "entry.json").write_text("{}")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    assert list(backend.iter_hashes()) == [job_hash("x")]  # leftovers are not entries
    assert backend.clear(older_than=time.time() - 3600) == 0
    assert not stale.exists() and fresh.exists()


def test_entry_replaced_while_reading_is_never_mixed(backend: FileCacheBackend) -> None:
    """A reader holding the old folder open reads the old version whole or fails (then
    get() reads the new one): never the old entry.json with the new arrays."""
    from hither_cache.file_backend import _Folder

    backend.put(entry("v", result=np.full(10, 1.0), function_version="1"))
    folder = _Folder(backend.entry_dir(job_hash("v")))
    try:
        ej = folder.read_bytes("entry.json")  # the reader got the metadata...
        backend.put(entry("v", result=np.full(10, 2.0), function_version="2"))  # ...then a writer
        assert not folder.still_at(backend.entry_dir(job_hash("v")))
        assert b'"function_version":"1"' in ej
        with pytest.raises(FileNotFoundError):  # old arrays are gone, new ones are not seen
            folder.open("a0.npy")
    finally:
        folder.close()
    now = backend.get(job_hash("v"))
    assert now is not None and now.function_version == "2" and (now.result == 2.0).all()


def test_fsync_option(tmp_path: Path) -> None:
    b = FileCacheBackend(tmp_path / "jc", fsync=True)
    b.put(entry("f", result=np.arange(3)))
    got = b.get(job_hash("f"))
    assert got is not None and got.status == JobStatus.FINISHED


def test_bad_hash_is_refused(backend: FileCacheBackend) -> None:
    with pytest.raises(ValueError):
        backend.get("../../etc")


@pytest.mark.parametrize("name", ["entry.json", "a0.npy"])
def test_entry_file_replaced_by_a_symlink_is_a_miss(backend: FileCacheBackend, tmp_path: Path,
                                                    name: str, caplog) -> None:
    """A file of an entry that is a symlink (it could lead anywhere) is never read: a miss."""
    backend.put(entry("linked", result={"a": np.arange(10.0)}))
    h = job_hash("linked")
    path = backend.entry_dir(h) / name
    outside = tmp_path / f"outside-{name}"
    outside.write_bytes(path.read_bytes())  # the very same bytes, reached through a link
    path.unlink()
    path.symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="hither.cache"):
        assert backend.get(h) is None
    assert "unreadable" in caplog.text


@pytest.mark.parametrize("bad", [-1, float("nan"), 1.5, "big", True])
def test_mmap_min_bytes_is_checked(tmp_path: Path, bad) -> None:
    from hither.errors import ConfigError

    with pytest.raises(ConfigError, match="mmap_min_bytes"):
        FileCacheBackend(tmp_path / "c", mmap_min_bytes=bad)
