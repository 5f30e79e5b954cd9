"""A local store never serves what is not the blob: a blob changed in place, a symlink or
any other file at a blob's place is refused; put repairs or refuses a damaged blob place;
names and write failures give clear StoreErrors."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from hither_store import Store, StoreError, StoreIntegrityError
from hither_store.cli import main
from hither_store.errors import StoreWriteError


@pytest.fixture
def local(tmp_path) -> Store:
    return Store(str(tmp_path / "store"))


def tamper_in_place(path: str, data: bytes) -> None:
    """Rewrite a blob's bytes without chmod and with its mtime put back (root can write a
    read-only file): only the ctime tells."""
    st = os.stat(path)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_tampered_blob_is_never_served(local):
    if os.geteuid() != 0:
        pytest.skip("writing a read-only blob in place without chmod needs root")
    arr = np.arange(1000.0)
    uri = local.put_array(arr)
    path = local.get_path(uri)
    np.testing.assert_array_equal(local.load_array(uri), arr)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[-8:] = np.float64(-1.0).tobytes()  # same size, one value changed
    tamper_in_place(path, bytes(data))
    for call in (local.get_path, local.open, local.load_array):
        with pytest.raises(StoreIntegrityError, match="hashes to") as info:
            call(uri)
        assert uri in str(info.value) and "verify --remove-bad" in str(info.value)
    # a second Store object and a fresh process see it too
    with pytest.raises(StoreIntegrityError):
        Store(local.url).load_array(uri)
    code = ("import sys; from hither_store import Store, StoreIntegrityError\n"
            f"try:\n    Store({local.url!r}).load_array({uri!r})\n"
            "except StoreIntegrityError as e:\n    print('refused'); sys.exit(0)\n"
            "print('served'); sys.exit(1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "refused" in out.stdout, out.stdout + out.stderr
    # the way out the message names
    assert local.verify(uri) is False and local.remove(uri)
    assert local.put_array(arr) == uri
    np.testing.assert_array_equal(local.load_array(uri), arr)


def test_blob_changed_by_another_process_is_found_on_first_read(local, tmp_path):
    """A fresh process re-hashes a blob on its first read, whatever its permissions."""
    uri = local.put_bytes(b"twelve bytes")
    path = local.get_path(uri)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"TWELVE")
    os.chmod(path, 0o444)
    code = ("from hither_store import Store, StoreIntegrityError\n"
            f"try:\n    Store({local.url!r}).get_path({uri!r}); print('served')\n"
            "except StoreIntegrityError:\n    print('refused')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "refused", out.stderr


def test_symlink_out_of_the_store_is_refused_even_with_the_right_content(local, tmp_path):
    data = b"right content, wrong kind of file"
    uri = local.put_bytes(data)
    path = local.local_blobs.path(uri[7:47])
    outside = tmp_path / "outside.bin"
    outside.write_bytes(data)
    os.unlink(path)
    os.symlink(outside, path)
    for call in (local.get_path, local.open, local.load_array):
        with pytest.raises(StoreIntegrityError, match="symbolic link"):
            call(uri)
    assert not local.exists(uri)
    assert local.verify(uri) is False
    # a put of the content repairs the blob place; the file outside is left alone
    assert local.put_bytes(data) == uri
    assert not os.path.islink(path) and local.get_path(uri) == path
    assert outside.read_bytes() == data and not os.path.islink(outside)


def test_verify_remove_bad_removes_a_symlinked_blob_not_its_target(local, tmp_path):
    uri = local.put_bytes(b"linked")
    path = local.local_blobs.path(uri[7:47])
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"other")
    os.unlink(path)
    os.symlink(outside, path)
    out = CliRunner().invoke(main, ["--url", local.url, "verify", "--remove-bad"])
    assert out.exit_code == 1 and "BAD" in out.output and "(removed)" in out.output
    assert not os.path.lexists(path) and outside.read_bytes() == b"other"


def test_blob_served_without_rehash_after_first_check(local, monkeypatch):
    """The re-hash happens once per process: later reads cost an lstat."""
    from hither_store import localdir

    uri = Store(local.url).put_bytes(b"x" * 100000)
    localdir._verified.clear()  # as in a fresh process
    calls = []
    real = localdir.copy_hashing
    monkeypatch.setattr(localdir, "copy_hashing", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        local.get_path(uri)
    assert len(calls) == 1


def test_directory_at_a_blob_place(local):
    data = b"into a directory?"
    digest = hashlib.sha1(data).hexdigest()
    path = local.local_blobs.path(digest)
    os.makedirs(os.path.join(path, "something"))
    with pytest.raises(StoreWriteError, match="directory where the blob") as info:
        local.put_bytes(data)
    assert isinstance(info.value, StoreError) and "Move that directory away" in str(info.value)
    with pytest.raises(StoreIntegrityError, match="directory"):
        local.get_path(f"sha1://{digest}/x")
    # verify lists it and --remove-bad removes it; then the put stores the content
    out = CliRunner().invoke(main, ["--url", local.url, "verify", "--remove-bad"])
    assert "BAD" in out.output and "(removed)" in out.output
    uri = local.put_bytes(data)
    with local.open(uri) as f:
        assert f.read() == data
    # an empty directory is nobody's data: the put repairs it
    data2 = b"empty directory"
    digest2 = hashlib.sha1(data2).hexdigest()
    os.makedirs(local.local_blobs.path(digest2))
    with local.open(local.put_bytes(data2)) as f:
        assert f.read() == data2


def test_truncated_blob_is_repaired_by_a_put(local):
    data = b"a whole blob" * 100
    uri = local.put_bytes(data)
    path = local.get_path(uri)
    os.chmod(path, 0o644)
    os.truncate(path, 10)
    assert local.put_bytes(data) == uri
    with local.open(uri) as f:
        assert f.read() == data


@pytest.mark.parametrize("name", ["", "a\0b", "/", ".", "..", "a/b", "line\nbreak", "x" * 256])
def test_bad_names_are_refused(local, tmp_path, name):
    src = tmp_path / "f.txt"
    src.write_bytes(b"named")
    for call in (lambda: local.put_file(src, name=name), lambda: local.put_bytes(b"x", name=name),
                 lambda: local.put_array(np.zeros(2), name=name)):
        with pytest.raises(StoreError, match="bad name|bad file name") as info:
            call()
        assert "plain file name" in str(info.value)
    assert local.stats().count == 0


def test_write_errors_are_store_errors_that_say_what_to_do(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / "tmp").write_text("a file where the store keeps its temporary files")
    store = Store(str(root))
    with pytest.raises(StoreWriteError, match="cannot write to the store") as info:
        store.put_bytes(b"nowhere to go")
    assert isinstance(info.value, StoreError) and isinstance(info.value, OSError)
    assert "writable" in str(info.value)


def test_read_only_store_folder(readonly_mount, tmp_path):
    folder, make_read_only = readonly_mount
    store = Store(str(folder / "store"))
    kept = store.put_bytes(b"stored before")
    make_read_only()
    with pytest.raises(StoreWriteError, match="Read-only file system") as info:
        store.put_bytes(b"new content")
    assert "make the folder writable" in str(info.value)
    with store.open(kept) as f:  # reading still works
        assert f.read() == b"stored before"
    src = tmp_path / "new.txt"
    src.write_text("new file")
    out = CliRunner().invoke(main, ["--url", store.url, "put", str(src)])
    assert out.exit_code == 1 and "Read-only file system" in out.output
    assert "endpoint" not in out.output and "credentials" not in out.output
    assert "Traceback" not in out.output


def test_cli_names_the_folder_not_credentials(tmp_path):
    """A local store that cannot be written is a folder problem, not an S3 one."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    src = tmp_path / "src.txt"
    src.write_text("content")
    out = CliRunner().invoke(main, ["--url", str(not_a_dir), "put", str(src)])
    assert out.exit_code == 1 and "cannot write to the store" in out.output
    assert "credentials" not in out.output and "endpoint" not in out.output
    assert "Traceback" not in out.output
