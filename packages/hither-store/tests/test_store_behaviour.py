"""Behaviour of the store, run alike against a local folder, memory:// and S3 (moto)."""
from __future__ import annotations

import hashlib
import io
import os
import pickle

import numpy as np
import pytest

import hither as hi
from hither.errors import HitherError
from hither_store import BlobNotFoundError, Store, StoreError, StoreStats
from hither_store.hashing import CHUNK


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def overwrite_blob(store: Store, digest: str, data: bytes) -> None:
    """Change a stored blob behind the store's back (a disk or bucket going bad)."""
    if store.is_local:
        path = store._blobs.path(digest)
        os.chmod(path, 0o644)
        with open(path, "wb") as f:
            f.write(data)
    else:
        store.fs.pipe_file(store._key(digest), data)
        store.fs.invalidate_cache()


def test_put_bytes_round_trip(store):
    uri = store.put_bytes(b"hello hither", name="greeting.txt")
    assert uri == f"sha1://{sha1(b'hello hither')}/greeting.txt"
    assert store.exists(uri)
    with store.open(uri) as f:
        assert f.read() == b"hello hither"
    with open(store.get_path(uri), "rb") as f:
        assert f.read() == b"hello hither"
    assert store.verify(uri)
    # the name is only a label: the same content under another name is the same blob
    assert store.get_path(f"sha1://{sha1(b'hello hither')}/other.txt") == store.get_path(uri)


def test_put_bytes_accepts_buffers_and_rejects_text(store):
    data = bytearray(b"\x00\x01\x02" * 100)
    assert store.put_bytes(memoryview(data)) == f"sha1://{sha1(bytes(data))}/data"
    with pytest.raises(TypeError, match="encode"):
        store.put_bytes("text")  # type: ignore[arg-type]


def test_put_file_uri_is_hi_file_uri(store, tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b"a,b\n1,2\n")
    uri = store.put_file(path)
    assert uri == hi.File(str(path)).uri == f"sha1://{sha1(b'a,b' + bytes([10]) + b'1,2' + bytes([10]))}/table.csv"
    assert store.put_file(path, name="renamed.csv").endswith("/renamed.csv")
    with store.open(uri) as f:
        assert f.read() == b"a,b\n1,2\n"


def test_put_file_larger_than_a_few_chunks(store, tmp_path):
    data = os.urandom(2 * CHUNK + 12345)  # exercises the threaded copy and partial last chunk
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    uri = store.put_file(path)
    assert uri == f"sha1://{sha1(data)}/big.bin"
    assert store.verify(uri)
    with open(store.get_path(uri), "rb") as f:
        assert f.read() == data


def test_put_empty_file(store, tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    uri = store.put_file(path)
    assert uri == f"sha1://{sha1(b'')}/empty"
    with store.open(uri) as f:
        assert f.read() == b""


def test_put_file_rejects_missing_file_and_folder(store, tmp_path):
    with pytest.raises(StoreError, match="existing file"):
        store.put_file(tmp_path / "nope.txt")
    with pytest.raises(StoreError, match="directory"):
        store.put_file(tmp_path)


ARRAYS = {
    "float64": np.arange(1000, dtype=np.float64),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": np.arange(600, dtype=np.int32).reshape(20, 30)[::3, ::2],
    "scalar": np.array(7, dtype=np.int16),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "structured": np.zeros(4, dtype=[("a", "<i4"), ("b", ">f8")]),
    "big-endian": np.arange(10, dtype=">u4"),
    "bool": np.array([True, False, True]),
    "unicode": np.array(["hither", "store"]),
    "complex": np.arange(5) * (1 + 2j),
}


@pytest.mark.parametrize("kind", sorted(ARRAYS))
def test_put_array_stores_exactly_what_np_save_writes(store, kind):
    arr = ARRAYS[kind]
    uri = store.put_array(arr)
    assert uri == f"sha1://{sha1(npy_bytes(arr))}/array.npy"
    with store.open(uri) as f:
        assert f.read() == npy_bytes(arr)
    loaded = store.load_array(uri)
    assert loaded.dtype == arr.dtype and loaded.shape == arr.shape
    np.testing.assert_array_equal(loaded, arr)


def test_put_array_large_strided_view(store):
    base = np.arange(3 * CHUNK // 8, dtype=np.float64).reshape(-1, 64)
    view = base[:, ::2]  # not contiguous, larger than a chunk: copied block by block
    uri = store.put_array(view)
    assert uri == f"sha1://{sha1(npy_bytes(view))}/array.npy"
    np.testing.assert_array_equal(store.load_array(uri), view)


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
    assert not store.exists(uri)
    for call in (store.get_path, store.open, store.load_array, store.verify):
        with pytest.raises(BlobNotFoundError, match="holds no content") as info:
            call(uri)
        assert uri in str(info.value)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, HitherError)


BAD_URIS = [
    "sha1://../../etc/passwd",
    f"sha1://{'a' * 40}/../../etc/passwd",
    f"sha1://{'a' * 40}/sub/dir.txt",
    f"sha1://{'a' * 40}/..",
    f"sha1://{'A' * 40}/upper.txt",
    f"sha1://{'a' * 39}/short.txt",
    f"md5://{'a' * 32}/x",
    "/etc/passwd",
]


@pytest.mark.parametrize("uri", BAD_URIS)
def test_malformed_uris_are_rejected(store, uri):
    for call in (store.get_path, store.open, store.exists, store.verify, store.load_array, store.remove):
        with pytest.raises(HitherError):
            call(uri)


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
    overwrite_blob(store, digest, b"changed in place")
    path = tmp_path / "same.txt"
    path.write_bytes(data)
    assert store.put_bytes(data) == uri
    assert store.put_file(path) == f"sha1://{digest}/same.txt"
    assert not store.verify(uri), "the existing blob was rewritten"
    if store.is_local:
        assert os.stat(store._blobs.path(digest)).st_ino == inode


def test_putting_a_stored_array_does_not_rewrite_it(store):
    arr = np.arange(5 * 1024 * 1024, dtype=np.float64)  # 40 MB: the speculative path
    uri = store.put_array(arr)
    digest = uri[7:47]
    overwrite_blob(store, digest, b"changed in place")
    assert store.put_array(arr) == uri
    assert not store.verify(uri), "the existing blob was rewritten"


def test_remove(store):
    uri = store.put_bytes(b"to remove")
    assert store.remove(uri) is True
    assert not store.exists(uri)
    assert store.remove(uri) is False
    assert store.put_bytes(b"to remove") == uri and store.exists(uri)


def test_store_pickles_by_url(store):
    uri = store.put_bytes(b"pickled")
    clone = pickle.loads(pickle.dumps(store))
    assert isinstance(clone, Store) and clone.url == store.url
    with clone.open(uri) as f:
        assert f.read() == b"pickled"


def test_a_relative_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = Store("relative-store")
    assert store.url == str(tmp_path / "relative-store")
    uri = store.put_bytes(b"here")
    monkeypatch.chdir("/")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.exists(uri)
