"""hither-store's local store and hither-core's ``ContentFolder`` are one layout
(``hither.content.layout``): the same files for the same content, each reading what the
other wrote (``hi.File`` falls back to a ContentFolder at the store's folder, and a Slurm
working folder's ``store/`` is read by either)."""
from __future__ import annotations

import os

import numpy as np

from hither.content.folder import ContentFolder
from hither.content.layout import BlobFolder
from hither_store import Store
from hither_store.localdir import LocalBlobDir
from hither_store.prune import prune, prune_folder


def files_under(root) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _dirs, files in os.walk(root) for f in files)


def test_store_and_content_folder_write_the_same_files(tmp_path):
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n")
    arr = np.arange(12.0).reshape(3, 4)
    uris = []
    for kind, make in (("store", Store), ("folder", ContentFolder)):
        s = make(str(tmp_path / kind))
        uris.append((s.put_file(str(src)), s.put_bytes(b"bytes", name="b"), s.put_array(arr)))
        for uri in uris[-1]:
            assert oct(os.stat(s.get_path(uri)).st_mode & 0o777) == oct(0o444)
    assert uris[0] == uris[1]
    assert files_under(tmp_path / "store") == files_under(tmp_path / "folder")
    for rel in files_under(tmp_path / "store"):
        assert (tmp_path / "store" / rel).read_bytes() == (tmp_path / "folder" / rel).read_bytes()


def test_each_reads_what_the_other_wrote(tmp_path):
    store, folder = Store(str(tmp_path / "s")), ContentFolder(str(tmp_path / "s"))
    by_store = store.put_bytes(b"from the store")
    by_folder = folder.put_bytes(b"from the folder")
    assert folder.verify(by_store) and open(folder.get_path(by_store), "rb").read() == b"from the store"
    assert store.verify(by_folder) and open(store.get_path(by_folder), "rb").read() == b"from the folder"
    assert sorted(store.iter_blobs()) == sorted(folder.local_blobs.iter_blobs())


def test_local_blobs_is_the_public_face_of_the_local_folder(tmp_path):
    local = Store(str(tmp_path / "s"))
    assert isinstance(local.local_blobs, LocalBlobDir) and isinstance(local.local_blobs, BlobFolder)
    assert local.local_blobs.root == str(tmp_path / "s")
    remote = Store("memory://layout-test", cache_dir=str(tmp_path / "cache"))
    assert remote.local_blobs.root == str(tmp_path / "cache")
    uri = local.put_bytes(b"old")
    assert prune(local, older_than=-1).removed == 1 and not local.exists(uri)


def test_prune_works_on_a_content_folder_too(tmp_path):
    folder = ContentFolder(str(tmp_path / "f"))
    uri = folder.put_bytes(b"old")
    report = prune_folder(folder.local_blobs, older_than=-1)
    assert report.removed == 1 and not folder.exists(uri)
