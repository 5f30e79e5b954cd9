"""hither-store as hither-core sees it: the registry, default_store(), hi.File, serialization."""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

import hither as hi
from hither.plugins import registry
from hither.values import codec as serialization
from hither.content.stores import default_store, set_default_store
from hither_store import Store, StoreError


@pytest.fixture
def no_default_store():
    set_default_store(None)
    yield
    set_default_store(None)


def test_registry_loads_the_store_class():
    registry.refresh()
    assert registry.load("stores", "fsspec") is Store
    assert "fsspec" in registry.names("stores")
    assert Store.name == "fsspec" and issubclass(Store, hi.Store)


def test_default_store_comes_from_the_environment(tmp_path, monkeypatch, no_default_store):
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "env-store"))
    store = default_store()
    assert isinstance(store, Store) and store.is_local
    assert store.url == str(tmp_path / "env-store")
    uri = store.put_bytes(b"via env")
    assert os.path.isfile(tmp_path / "env-store" / "sha1" / uri[7:9] / uri[9:11] / uri[7:47])


def test_default_store_follows_the_environment_variable(tmp_path, monkeypatch, no_default_store):
    """A program that changes $HITHER_STORE_URL after first use gets the new store (each
    store opened once), and hi.File content goes there."""
    import hither as hi

    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    monkeypatch.setenv("HITHER_STORE_URL", first)
    store_a = default_store()
    monkeypatch.setenv("HITHER_STORE_URL", second)
    store_b = default_store()
    assert store_b.url == second and store_a.url == first
    assert default_store() is store_b
    monkeypatch.setenv("HITHER_STORE_URL", first)
    assert default_store() is store_a  # cached per URL, not reopened
    monkeypatch.setenv("HITHER_STORE_URL", second)
    src = tmp_path / "data.txt"
    src.write_text("follow the variable")
    f = hi.File(str(src))
    assert store_b.exists(f.uri) and not store_a.exists(f.uri)


def test_set_default_store_wins_over_the_environment(tmp_path, monkeypatch, no_default_store):
    from hither_store import Store

    pinned = Store(str(tmp_path / "pinned"))
    set_default_store(pinned)
    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "elsewhere"))
    assert default_store() is pinned
    set_default_store(None)
    assert default_store().url == str(tmp_path / "elsewhere")


def test_default_location_is_the_user_cache(monkeypatch):
    monkeypatch.delenv("HITHER_STORE_URL")
    monkeypatch.delenv("HITHER_STORE_CACHE")
    import platformdirs

    cache = platformdirs.user_cache_dir("hither", appauthor=False)
    store = Store()  # nothing is written until something is put
    assert store.url == os.path.join(cache, "store") and store.is_local
    assert Store("memory://x").local_blobs.root == os.path.join(cache, "store-cache")


def test_store_options_from_the_environment(monkeypatch, s3_store_url, s3_options, no_default_store):
    monkeypatch.setenv("HITHER_STORE_URL", s3_store_url)
    monkeypatch.setenv("HITHER_STORE_OPTIONS", json.dumps(s3_options))
    store = default_store()
    assert not store.is_local and store.storage_options == s3_options
    uri = store.put_bytes(b"via env to s3")
    with store.open(uri) as f:
        assert f.read() == b"via env to s3"


def test_bad_locations_say_what_to_do(monkeypatch):
    with pytest.raises(StoreError, match="fsspec URL"):
        Store("no-such-protocol://x")
    try:
        import gcsfs  # noqa: F401
    except ImportError:  # a file system fsspec knows whose package is missing
        with pytest.raises(StoreError, match="gcsfs"):
            Store("gcs://bucket/prefix")
    monkeypatch.setenv("HITHER_STORE_URL", "memory://env")
    monkeypatch.setenv("HITHER_STORE_OPTIONS", "{not json")
    with pytest.raises(StoreError, match="HITHER_STORE_OPTIONS"):
        Store()


def test_hi_file_uri_is_stable(tmp_path, store):
    a = tmp_path / "a.txt"
    a.write_text("same content")
    uri = hi.File(str(a)).uri
    b_dir = tmp_path / "elsewhere"
    b_dir.mkdir()
    shutil.copy2(a, b_dir / "a.txt")
    assert hi.File(str(b_dir / "a.txt")).uri == uri  # content, not path
    os.utime(a)  # a new mtime re-hashes to the same sha1
    assert hi.File(str(a)).uri == uri
    assert store.put_file(a) == uri
    a.write_text("other content")
    assert hi.File(str(a)).uri != uri


def test_hi_file_resolves_through_the_store_when_its_path_is_gone(tmp_path, store, no_default_store):
    path = tmp_path / "input.csv"
    path.write_text("x,y\n1,2\n")
    f = hi.File(str(path))
    assert store.put_file(path) == f.uri
    set_default_store(store)
    os.remove(path)
    resolved = f.resolve()
    assert resolved != str(path) and f.read_text() == "x,y\n1,2\n"
    assert hi.File.from_uri(f.uri).read_text() == "x,y\n1,2\n"
    with open(f, "rb") as fh:  # os.fspath goes through resolve() too
        assert fh.read() == b"x,y\n1,2\n"


def test_hi_file_not_in_the_store(tmp_path, store, no_default_store):
    set_default_store(store)
    missing = hi.File.from_uri("sha1://" + "0" * 40 + "/gone.txt")
    with pytest.raises(FileNotFoundError, match="holds no content"):
        missing.resolve()


def test_serialization_offloads_arrays_to_the_store(store):
    value = {"x": np.arange(6.0).reshape(2, 3), "n": 3, "items": [np.int8(4), "s"]}
    encoded = serialization.encode(value, array_sink=store.put_array)
    text = json.dumps(encoded)  # JSON-able: the array travels as a sha1:// reference
    assert "sha1://" in text and "AAAA" not in text
    decoded = serialization.decode(json.loads(text), array_source=store.load_array)
    np.testing.assert_array_equal(decoded["x"], value["x"])
    assert decoded["n"] == 3 and decoded["items"][1] == "s"


def test_local_put_file_shares_the_sha1_memo_with_hi_file(tmp_path):
    """A local put hashes while it copies and records the sha1 for hi.File; a later put of
    the same unchanged path is answered from that memo without copying."""
    from hither.content.hashing import known_file_sha1

    store = Store(str(tmp_path / "store"))
    path = tmp_path / "memo.bin"
    path.write_bytes(b"memo me" * 1000)
    old = time.time_ns() - 60 * 10**9  # only files not written just now are memoized
    os.utime(path, ns=(old, old))
    assert known_file_sha1(path) is None
    uri = store.put_file(path)
    assert known_file_sha1(path) == uri[7:47] == hi.File(str(path)).sha1
    tmp_dir = os.path.join(store.root, "tmp")
    os.rmdir(tmp_dir)  # a memo hit does not even open a temporary file (which would make it)
    assert store.put_file(path) == uri
    assert not os.path.exists(tmp_dir)
    path.write_bytes(b"changed")
    assert known_file_sha1(path) is None
