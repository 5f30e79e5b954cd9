"""Behaviour of the store, run alike against a local folder, memory:// and S3 (moto).

``TestFsspecStoreConformance`` runs hither-core's conformance suite
(``hither.testing.store_conformance``: what every ``hither.plugins.interfaces.Store`` must do) on
the three backends of conftest's ``store`` fixture; the tests after it are this store's own
(its errors and messages, ``name=``, ``stats``/``remove``, blob layout, memory maps).
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from hither.errors import HitherError
from hither.testing.store_conformance import BAD_URIS, StoreConformance, bad_uri, sha1
from hither_store import BlobNotFoundError, Store, StoreError, StoreStats
from hither.content.hashing import CHUNK


class TestFsspecStoreConformance(StoreConformance):
    """The conformance suite; ``store`` is conftest's (parametrized by ``backend``)."""

    picklable = True
    array_name = "array.npy"
    large_file_bytes = 2 * CHUNK + 12345  # exercises the threaded copy and partial last chunk
    large_array_bytes = 3 * CHUNK  # a strided view larger than a chunk: copied block by block


def overwrite_blob(store: Store, digest: str, data: bytes) -> None:
    """Change a stored blob behind the store's back (a disk or bucket going bad)."""
    if store.is_local:
        path = store.local_blobs.path(digest)
        os.chmod(path, 0o644)
        with open(path, "wb") as f:
            f.write(data)
    else:
        store.fs.pipe_file(store._key(digest), data)
        store.fs.invalidate_cache()


def test_the_same_content_under_another_name_is_the_same_blob(store):
    uri = store.put_bytes(b"hello hither", name="greeting.txt")
    # the name is only a label: the same content under another name is the same blob
    assert store.get_path(f"sha1://{sha1(b'hello hither')}/other.txt") == store.get_path(uri)


def test_put_bytes_accepts_buffers_and_rejects_text(store):
    data = bytearray(b"\x00\x01\x02" * 100)
    assert store.put_bytes(memoryview(data)) == f"sha1://{sha1(bytes(data))}/data"
    with pytest.raises(TypeError, match="encode"):
        store.put_bytes("text")  # type: ignore[arg-type]


def test_put_file_name_argument(store, tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert store.put_file(path, name="renamed.csv").endswith("/renamed.csv")


def test_put_file_rejects_missing_file_and_folder(store, tmp_path):
    with pytest.raises(StoreError, match="existing file"):
        store.put_file(tmp_path / "nope.txt")
    with pytest.raises(StoreError, match="directory"):
        store.put_file(tmp_path)


def test_load_array_mmap_is_read_only_and_local(store):
    arr = np.arange(100.0)
    uri = store.put_array(arr)
    mapped = store.load_array(uri, mmap=True)
    assert isinstance(mapped, np.memmap)
    # zero-copy: for a local store the map is of the blob itself, else of the verified copy
    assert os.path.samefile(mapped.filename, store.get_path(uri))
    with pytest.raises(ValueError):
        mapped[0] = 1.0  # a map of stored content must never change it
    copy = store.load_array(uri, mmap=False)
    assert not isinstance(copy, np.memmap)
    copy[0] = 5.0
    np.testing.assert_array_equal(store.load_array(uri), arr)


def test_load_array_of_non_array_content(store):
    uri = store.put_bytes(b"not an array")
    with pytest.raises(StoreError, match="not a readable .npy"):
        store.load_array(uri)


def test_put_array_rejects_object_and_masked_arrays(store):
    with pytest.raises(StoreError, match="Python objects"):
        store.put_array(np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(StoreError, match="mask"):
        store.put_array(np.ma.masked_array([1, 2], mask=[0, 1]))
    assert store.stats() == StoreStats(0, 0)


def test_missing_content(store):
    uri = f"sha1://{sha1(b'never stored')}/x.txt"
    for call in (store.get_path, store.open, store.load_array, store.verify):
        with pytest.raises(BlobNotFoundError, match="holds no content") as info:
            call(uri)
        assert uri in str(info.value)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, HitherError)


@pytest.mark.parametrize("template", BAD_URIS)
def test_malformed_uris_are_rejected_by_remove(store, template):
    stored = store.put_bytes(b"present")[7:47]
    for digest in (stored, "a" * 40):
        with pytest.raises(HitherError):
            store.remove(bad_uri(template, digest))
    assert store.stats().count == 1


@pytest.mark.parametrize("name", ["../escape.txt", "a/b.txt", "..", "back\\slash"])
def test_bad_names_are_rejected_before_storing(store, tmp_path, name):
    with pytest.raises(HitherError, match="plain file name"):
        store.put_bytes(b"x", name=name)
    path = tmp_path / "f.txt"
    path.write_bytes(b"y")
    with pytest.raises(HitherError, match="plain file name"):
        store.put_file(path, name=name)
    assert store.stats() == StoreStats(0, 0)


def test_stats_count_each_content_once(store, tmp_path):
    assert store.stats() == StoreStats(0, 0)
    store.put_bytes(b"one")
    store.put_bytes(b"one", name="again")
    store.put_bytes(b"three")
    path = tmp_path / "f"
    path.write_bytes(b"three")
    store.put_file(path)
    st = store.stats()
    assert (st.count, st.bytes) == (2, len(b"one") + len(b"three"))
    assert sorted(d for d, _ in store.iter_blobs()) == sorted([sha1(b"one"), sha1(b"three")])


def test_putting_stored_content_does_not_rewrite_it(store, tmp_path):
    data = b"stored once"
    uri = store.put_bytes(data)
    digest = uri[7:47]
    inode = os.stat(store.get_path(uri)).st_ino if store.is_local else None
    # make the stored blob differ from what a rewrite would write: a rewrite would "fix" it
    # (same size: a blob of the wrong size is not whole, and a put repairs it)
    overwrite_blob(store, digest, b"STORED ONCE")
    path = tmp_path / "same.txt"
    path.write_bytes(data)
    assert store.put_bytes(data) == uri
    assert store.put_file(path) == f"sha1://{digest}/same.txt"
    assert not store.verify(uri), "the existing blob was rewritten"
    if store.is_local:
        assert os.stat(store.local_blobs.path(digest)).st_ino == inode


def test_putting_a_stored_array_does_not_rewrite_it(store):
    arr = np.arange(5 * 1024 * 1024, dtype=np.float64)  # 40 MB: the speculative path
    uri = store.put_array(arr)
    digest = uri[7:47]
    overwrite_blob(store, digest, bytes(arr.nbytes + 128))  # same size as the .npy (header: 128)
    assert store.put_array(arr) == uri
    assert not store.verify(uri), "the existing blob was rewritten"


def test_remove(store):
    uri = store.put_bytes(b"to remove")
    assert store.remove(uri) is True
    assert not store.exists(uri)
    assert store.remove(uri) is False
    assert store.put_bytes(b"to remove") == uri and store.exists(uri)


def test_store_pickles_by_url(store):
    clone = pickle.loads(pickle.dumps(store))
    assert isinstance(clone, Store) and clone.url == store.url
    assert clone.storage_options == store.storage_options


def test_a_relative_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store("relative-store")
    assert store.url == str(tmp_path / "relative-store")
    uri = store.put_bytes(b"here")
    monkeypatch.chdir("/")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.exists(uri)
