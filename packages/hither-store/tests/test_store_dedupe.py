"""A local put of content already stored copies nothing: a hard link or rename of a file this
process stored is known by its inode; a large file of a size some blob has is hashed before
anything is copied. Both are shortcuts only: a wrong hint never stores wrong content."""
from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

from hither_store import Store
from hither_store import localdir
from hither.content.layout import SIZE_HINT_MIN


@pytest.fixture
def spy_new_blob(monkeypatch):
    made = []
    real = localdir.LocalBlobDir.new_blob

    def new_blob(self):
        made.append(1)
        return real(self)

    monkeypatch.setattr(localdir.LocalBlobDir, "new_blob", new_blob)
    return made


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(SIZE_HINT_MIN + 12345))
    return path


def test_copy_of_stored_large_content_is_not_copied_again(tmp_path, big_file, spy_new_blob):
    store = Store(str(tmp_path / "store"))
    uri = store.put_file(big_file)
    assert spy_new_blob == [1]
    copy = tmp_path / "copy.bin"
    shutil.copyfile(big_file, copy)  # another inode: only its content says it is stored
    assert store.put_file(copy) == uri.replace("big.bin", "copy.bin")
    assert spy_new_blob == [1], "the duplicate was copied before it was known to be one"
    assert os.listdir(store.local_blobs.tmp_dir) == []


def test_hard_link_of_a_stored_file_is_not_read(tmp_path, big_file, monkeypatch):
    from hither_store import store as store_module

    store = Store(str(tmp_path / "store"))
    uri = store.put_file(big_file)
    link = tmp_path / "link.bin"
    os.link(big_file, link)
    reads = []
    monkeypatch.setattr(store_module, "copy_hashing", lambda *a, **k: reads.append(1))
    assert store.put_file(link) == uri.replace("big.bin", "link.bin")
    assert reads == []


def test_a_stale_size_hint_still_stores_the_content(tmp_path, big_file):
    store = Store(str(tmp_path / "store"))
    uri = store.put_file(big_file)
    store.remove(uri)  # the size hint stays behind
    copy = tmp_path / "copy.bin"
    shutil.copyfile(big_file, copy)
    assert store.put_file(copy) == uri.replace("big.bin", "copy.bin")
    assert store.verify(uri)
    # same size, other content: hashed first, then stored under its own sha1
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(os.path.getsize(big_file)))
    other_uri = store.put_file(other)
    digest = hashlib.sha1(other.read_bytes()).hexdigest()
    assert other_uri == f"sha1://{digest}/other.bin" and store.verify(other_uri)


def test_array_of_a_stored_size_is_hashed_before_it_is_written(tmp_path, spy_new_blob):
    store = Store(str(tmp_path / "store"))
    arr = np.arange(SIZE_HINT_MIN // 8 + 100, dtype=np.float64)
    uri = store.put_array(arr)
    assert spy_new_blob == [1]
    assert store.put_array(arr.copy()) == uri
    assert spy_new_blob == [1]
    changed = arr.copy()
    changed[0] = -1
    uri2 = store.put_array(changed)
    assert uri2 != uri and spy_new_blob == [1, 1]
    np.testing.assert_array_equal(store.load_array(uri2), changed)
