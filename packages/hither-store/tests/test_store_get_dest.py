"""``hither-store get URI DEST`` never replaces what the user named: a symlink is written
through, a FIFO or a device is refused unless ``--force-special`` says to write into it."""
from __future__ import annotations

import os
import stat
import threading

import pytest
from click.testing import CliRunner

from hither_store import Store
from hither_store.cli import main

CONTENT = b"content for get\n"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def stored(tmp_path):
    store = Store(str(tmp_path / "store"))
    return ["--url", store.url], store.put_bytes(CONTENT, name="got.txt"), store


def test_symlink_dest_is_written_through(stored, tmp_path):
    args, uri, _store = stored
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    out = run(*args, "get", uri, str(link))
    assert out.exit_code == 0, out.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == CONTENT
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # the file keeps its permissions
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "real.txt", "store"]


def test_dangling_symlink_dest_creates_its_target(stored, tmp_path):
    args, uri, _store = stored
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "not-yet.txt")
    out = run(*args, "get", uri, str(link))
    assert out.exit_code == 0, out.output
    assert link.is_symlink() and (tmp_path / "not-yet.txt").read_bytes() == CONTENT


def test_symlink_into_a_folder_dest(stored, tmp_path):
    """DEST a folder: DEST/<name> gets the same treatment (a symlink there is written through)."""
    args, uri, _store = stored
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = tmp_path / "elsewhere.txt"
    (out_dir / "got.txt").symlink_to(target)
    assert run(*args, "get", uri, str(out_dir)).exit_code == 0
    assert (out_dir / "got.txt").is_symlink() and target.read_bytes() == CONTENT


def test_fifo_dest_is_refused_unless_forced(stored, tmp_path):
    args, uri, _store = stored
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = run(*args, "get", uri, str(fifo))
    assert out.exit_code == 1
    assert "FIFO" in out.output and "--force-special" in out.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    out = run(*args, "get", "--force-special", uri, str(fifo))
    reader.join(timeout=20)
    assert out.exit_code == 0, out.output
    assert got == [CONTENT]  # written into the pipe
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # and the pipe is still a pipe


@pytest.fixture
def char_device(tmp_path):
    """A real character device: a private node of /dev/null's device (1, 3) when this process
    may create one (root), so that code that wrongly replaces DEST cannot damage the
    system's /dev/null; else /dev/null itself."""
    node = tmp_path / "null-node"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return str(node)
    except (PermissionError, AttributeError, OSError):
        return "/dev/null"


def _refused_and_kept(args, uri, dest: str) -> None:
    out = run(*args, "get", uri, dest)
    assert out.exit_code == 1 and "character device" in out.output and "--force-special" in out.output
    assert stat.S_ISCHR(os.lstat(dest).st_mode)
    out = run(*args, "get", "--force-special", uri, dest)
    assert out.exit_code == 0, out.output
    assert stat.S_ISCHR(os.lstat(dest).st_mode)


@pytest.mark.timeout(60)
def test_device_dest_is_refused_and_never_replaced(stored, char_device):
    """As root a replace turned /dev/null into a regular file: a device must stay a device."""
    args, uri, _store = stored
    _refused_and_kept(args, uri, char_device)
    # the system's /dev/null itself, once the private node showed that get leaves devices alone
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    _refused_and_kept(args, uri, "/dev/null")


def test_symlink_to_a_device_is_refused_too(stored, tmp_path, char_device):
    args, uri, _store = stored
    link = tmp_path / "null"
    link.symlink_to(char_device)
    out = run(*args, "get", uri, str(link))
    assert out.exit_code == 1 and "character device" in out.output
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(char_device).st_mode)


def test_dest_leading_into_the_store_is_refused(stored, tmp_path):
    """A symlink into the store must not let get overwrite a blob (as root nothing stops it)."""
    args, uri, store = stored
    other = store.put_bytes(b"another blob")
    link = tmp_path / "into-store"
    link.symlink_to(store.get_path(other))
    out = run(*args, "get", uri, str(link))
    assert out.exit_code == 1 and "store's own folder" in out.output
    assert store.verify(other)
