"""The on-disk layout of a content folder (``hither.content.layout``) is pinned here, byte for
byte: existing stores, hither-store's local stores and Slurm working folders hold content in
it. Also the one sha1 helper (``hither.content.hashing``) that names that content.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from pathlib import Path
from typing import List

import pytest

from hither.content.folder import ContentFolder
from hither.content.hashing import (copy_hashing, file_sha1, format_uri, is_sha1_hex, parse_uri,
                                    sha1_of_buffers, sha1_of_bytes, sha1_of_fd, write_all)
from hither.content.layout import SIZE_HINT_MIN, BlobFolder, BlobPlaceTaken, blob_relpath
from hither.errors import HitherError
from hither.plugins.interfaces import ContentNotFoundError, Store

HELLO = b"hello"
HELLO_SHA1 = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"  # sha1 of b"hello", a constant on purpose


def tree(root: Path) -> List[str]:
    """Every file and folder under ``root``, relative, '/'-separated, folders ending in '/'."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        out += [prefix + d + "/" for d in dirs] + [prefix + f for f in files]
    return sorted(out)


# ----------------------------------------------------------------- the layout, pinned

def test_a_blob_lives_at_sha1_ab_cd_digest():
    assert blob_relpath(HELLO_SHA1) == f"sha1/aa/f4/{HELLO_SHA1}"
    assert BlobFolder("/x/store").path(HELLO_SHA1) == os.path.join("/x/store", "sha1", "aa", "f4", HELLO_SHA1)


def test_content_folder_writes_exactly_the_pinned_layout(tmp_path):
    folder = ContentFolder(str(tmp_path / "store"))
    assert folder.put_bytes(HELLO, name="greeting.txt") == f"sha1://{HELLO_SHA1}/greeting.txt"
    src = tmp_path / "data.bin"
    src.write_bytes(b"\x00\x01")
    digest = parse_uri(folder.put_file(str(src)))[0]
    assert tree(tmp_path / "store") == sorted([
        "sha1/", "tmp/",
        "sha1/aa/", "sha1/aa/f4/", f"sha1/aa/f4/{HELLO_SHA1}",
        f"sha1/{digest[:2]}/", f"sha1/{digest[:2]}/{digest[2:4]}/", f"sha1/{digest[:2]}/{digest[2:4]}/{digest}",
    ])
    blob = tmp_path / "store" / "sha1" / "aa" / "f4" / HELLO_SHA1
    assert blob.read_bytes() == HELLO  # the content itself: no header, no compression
    assert stat.S_IMODE(os.stat(blob).st_mode) == 0o444  # read-only


def test_a_folder_written_before_is_read_as_it_is(tmp_path):
    """A store (or Slurm working folder) written by an earlier hither: a blob placed by hand."""
    root = tmp_path / "old"
    blob = root / "sha1" / "aa" / "f4" / HELLO_SHA1
    blob.parent.mkdir(parents=True)
    blob.write_bytes(HELLO)
    folder = ContentFolder(str(root))
    uri = f"sha1://{HELLO_SHA1}/x.txt"
    assert folder.exists(uri) and folder.verify(uri)
    assert folder.get_path(uri) == str(blob)
    assert list(folder.local_blobs.iter_blobs()) == [(HELLO_SHA1, 5)]
    inode = os.stat(blob).st_ino
    assert folder.put_bytes(HELLO, name="x.txt") == uri
    assert os.stat(blob).st_ino == inode  # never rewritten


def test_temp_names_and_size_hints(tmp_path):
    blobs = BlobFolder(str(tmp_path / "s"))
    tmp = blobs.temp_path()
    assert re.fullmatch(re.escape(str(tmp_path / "s" / "tmp")) + re.escape(os.sep) + rf"{os.getpid()}-[0-9a-f]{{32}}\.part", tmp)
    blobs.note_size(SIZE_HINT_MIN - 1)
    assert not (tmp_path / "s" / "sizes").exists()
    blobs.note_size(SIZE_HINT_MIN)
    hint = tmp_path / "s" / "sizes" / str(SIZE_HINT_MIN)
    assert hint.is_file() and hint.stat().st_size == 0
    assert blobs.may_hold_size(SIZE_HINT_MIN) and not blobs.may_hold_size(SIZE_HINT_MIN + 1)
    assert SIZE_HINT_MIN == 32 * 1024 * 1024


# ----------------------------------------------------------------- publishing

def _temp_with(blobs: BlobFolder, data: bytes) -> str:
    tmp, f = blobs.create_temp()
    with f:
        f.write(data)
    return tmp


def test_publish_keeps_a_whole_blob_and_removes_the_temp(tmp_path):
    blobs = BlobFolder(str(tmp_path / "s"))
    assert blobs.publish(_temp_with(blobs, HELLO), HELLO_SHA1) is True
    inode = os.stat(blobs.path(HELLO_SHA1)).st_ino
    assert blobs.publish(_temp_with(blobs, HELLO), HELLO_SHA1) is False
    assert os.stat(blobs.path(HELLO_SHA1)).st_ino == inode
    assert os.listdir(blobs.tmp_dir) == [] and list(blobs.iter_partials()) == []


@pytest.mark.parametrize("what", ["symlink", "truncated", "empty-dir"])
def test_publish_repairs_what_is_not_a_whole_blob(tmp_path, what):
    folder = ContentFolder(str(tmp_path / "s"))
    place = Path(folder.local_blobs.path(HELLO_SHA1))
    place.parent.mkdir(parents=True)
    if what == "symlink":
        (tmp_path / "elsewhere").write_bytes(HELLO)
        place.symlink_to(tmp_path / "elsewhere")
    elif what == "truncated":
        place.write_bytes(HELLO[:2])
    else:
        place.mkdir()
    uri = folder.put_bytes(HELLO)
    assert not place.is_symlink() and place.read_bytes() == HELLO and folder.verify(uri)


def test_publish_leaves_a_non_empty_directory_alone(tmp_path):
    blobs = BlobFolder(str(tmp_path / "s"))
    place = Path(blobs.path(HELLO_SHA1))
    (place / "someone's").mkdir(parents=True)
    with pytest.raises(BlobPlaceTaken, match="Move that directory away"):
        blobs.publish(_temp_with(blobs, HELLO), HELLO_SHA1)
    assert (place / "someone's").is_dir() and os.listdir(blobs.tmp_dir) == []


def test_listing_and_removing(tmp_path):
    folder = ContentFolder(str(tmp_path / "s"))
    folder.put_bytes(HELLO)
    (tmp_path / "s" / "sha1" / "aa" / "f4" / "not-a-blob").write_bytes(b"")
    partial = _temp_with(folder.local_blobs, b"half")
    assert list(folder.local_blobs.iter_blobs()) == [(HELLO_SHA1, 5)]
    assert [p for p, _mtime in folder.local_blobs.iter_partials()] == [partial]
    assert folder.local_blobs.remove(HELLO_SHA1) is True
    assert folder.local_blobs.remove(HELLO_SHA1) is False
    assert not folder.exists(f"sha1://{HELLO_SHA1}/x")


# ----------------------------------------------------------------- ContentFolder as a Store

def test_content_folder_is_a_store_and_says_what_is_missing(tmp_path):
    folder = ContentFolder(str(tmp_path / "s"))
    assert isinstance(folder, Store) and folder.is_local
    uri = f"sha1://{HELLO_SHA1}/x"
    for call in (folder.get_path, folder.open, folder.load_array, folder.verify):
        with pytest.raises(ContentNotFoundError, match="holds no content"):
            call(uri)
    with pytest.raises(FileNotFoundError):  # as before: a FileNotFoundError too
        folder.get_path(uri)


def test_content_folder_verify_finds_a_corrupt_blob(tmp_path):
    folder = ContentFolder(str(tmp_path / "s"))
    uri = folder.put_bytes(HELLO)
    path = folder.get_path(uri)
    os.chmod(path, 0o644)
    Path(path).write_bytes(b"jello")
    assert folder.verify(uri) is False


# ----------------------------------------------------------------- the one sha1 helper

def test_sha1_of_bytes_buffers_fd_and_file(tmp_path):
    assert sha1_of_bytes(HELLO) == HELLO_SHA1 == hashlib.sha1(HELLO).hexdigest()
    assert sha1_of_buffers([memoryview(b"hel"), memoryview(b"lo")]) == (HELLO_SHA1, 5)
    p = tmp_path / "h"
    p.write_bytes(b"xxhello")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.lseek(fd, 2, os.SEEK_SET)
        assert sha1_of_fd(fd) == HELLO_SHA1  # from the current offset on
    finally:
        os.close(fd)
    assert file_sha1(p) == hashlib.sha1(b"xxhello").hexdigest()


@pytest.mark.parametrize("size_hint", [-1, 300_000])
def test_copy_hashing_copies_and_hashes_in_one_pass(size_hint):
    data = os.urandom(300_000)
    out = io.BytesIO()
    # chunks of 64 KiB: with no size hint the writes run in the helper thread
    got = copy_hashing(io.BytesIO(data).readinto, out.write, size_hint, chunk_size=64 * 1024)
    assert got == (hashlib.sha1(data).hexdigest(), len(data)) and out.getvalue() == data


def test_copy_hashing_passes_on_a_write_error():
    def fail(_chunk: memoryview) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        copy_hashing(io.BytesIO(os.urandom(300_000)).readinto, fail, -1, chunk_size=64 * 1024)


def test_write_all_stops_when_asked():
    out = io.BytesIO()
    assert write_all(out.write, [memoryview(b"abcdef")], chunk_size=2) is True and out.getvalue() == b"abcdef"
    calls = iter([False, True])
    out = io.BytesIO()
    assert write_all(out.write, [memoryview(b"abcdef")], chunk_size=2, stop=lambda: next(calls)) is False
    assert out.getvalue() == b"ab"


def test_uris():
    assert format_uri(HELLO_SHA1, "a.txt") == f"sha1://{HELLO_SHA1}/a.txt"
    assert parse_uri(f"sha1://{HELLO_SHA1}/a.txt") == (HELLO_SHA1, "a.txt")
    assert is_sha1_hex(HELLO_SHA1) and not is_sha1_hex(HELLO_SHA1.upper())
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(HitherError):
            format_uri(HELLO_SHA1, bad)
    with pytest.raises(HitherError):
        format_uri("g" * 40, "x")
