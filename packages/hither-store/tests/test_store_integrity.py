"""Content read from a non-local store is checked against its sha1 and never served if bad."""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import pytest

from hither_store import Store, StoreIntegrityError


@pytest.fixture(params=["memory", "s3"])
def remote_backend(request):
    return request.param


@pytest.fixture
def remote_store(remote_backend, request):
    return request.getfixturevalue("store")


# the behaviour tests' ``store`` fixture is parametrized by ``backend``: narrow it here
@pytest.fixture
def backend(remote_backend):
    return remote_backend


def cache_files(store: Store) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), store.local_blobs.root)
                  for d, _dirs, files in os.walk(store.local_blobs.root) for f in files)


def test_remote_content_is_cached_after_verification(remote_store):
    uri = remote_store.put_bytes(b"cached copy")
    path = remote_store.get_path(uri)
    assert path.startswith(remote_store.local_blobs.root)
    assert remote_store.get_path(uri) == path
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only (root may write anyway)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o444)


def test_corrupt_remote_blob_is_never_served(remote_store):
    arr = np.arange(1000.0)
    uri = remote_store.put_array(arr)
    digest = uri[7:47]
    remote_store.fs.pipe_file(remote_store._key(digest), b"\x93NUMPY garbage")
    remote_store.fs.invalidate_cache()
    for call in (remote_store.get_path, remote_store.open, remote_store.load_array):
        with pytest.raises(StoreIntegrityError, match="corrupt") as info:
            call(uri)
        assert uri in str(info.value) and "verify --remove-bad" in str(info.value)
    # nothing of the bad download is left in the local cache, not even in tmp/
    assert cache_files(remote_store) == []
    assert remote_store.verify(uri) is False
    # the way out the error names: remove it, put the content again
    assert remote_store.remove(uri)
    assert remote_store.put_array(arr) == uri
    np.testing.assert_array_equal(remote_store.load_array(uri), arr)


def test_blob_swapped_for_other_valid_content_is_rejected(remote_store):
    """A blob holding some other content (e.g. a mix-up of keys) is as bad as garbage."""
    uri_a = remote_store.put_bytes(b"content A")
    uri_b = remote_store.put_bytes(b"content B")
    remote_store.fs.pipe_file(remote_store._key(uri_a[7:47]), b"content B")
    remote_store.fs.invalidate_cache()
    with pytest.raises(StoreIntegrityError):
        remote_store.get_path(uri_a)
    with remote_store.open(uri_b) as f:
        assert f.read() == b"content B"


def test_local_store_verify_finds_corruption(tmp_path):
    store = Store(str(tmp_path / "store"))
    uri = store.put_bytes(b"good")
    path = store.get_path(uri)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"bad!")
    assert store.verify(uri) is False


def test_file_changed_behind_the_sha1_memo_is_not_stored(remote_store, tmp_path):
    """A remote put uses the memoized sha1 (to skip content already stored), then uploads
    while hashing again: content rewritten with its size and mtime kept (``cp -p``,
    ``rsync -t``) no longer matches, is refused, and nothing becomes visible."""
    import hither as hi

    path = tmp_path / "data.bin"
    first, second = b"first version." * 1000, b"other version." * 1000
    path.write_bytes(first)
    old = time.time_ns() - 60 * 10**9  # only files not written just now are memoized
    os.utime(path, ns=(old, old))
    stale_uri = hi.File(str(path)).uri  # memoized by (path, size, mtime)
    st = os.stat(path)
    path.write_bytes(second)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(StoreIntegrityError, match="changed while it was being stored"):
        remote_store.put_file(path)
    for data in (first, second):
        assert not remote_store.exists(f"sha1://{hashlib.sha1(data).hexdigest()}/x")
    assert remote_store.stats().count == 0
    remote_store.fs.invalidate_cache()
    leftovers = remote_store.fs.find(f"{remote_store.root}/tmp")
    assert leftovers == [], leftovers
    assert stale_uri.endswith("/data.bin")
