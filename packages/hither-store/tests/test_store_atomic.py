"""Atomic writes: concurrent writers and writers killed mid-put never expose a partial blob."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hither_store import Store, StoreStats

PUT_CHILD = r"""
import json, os, sys, time
from hither_store import Store, StoreStats
url, options, path, go = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
store = Store(url, storage_options=options)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:  # start all writers at once
    time.sleep(0.005)
print(store.put_file(path), flush=True)
"""


@pytest.fixture(params=["local", "s3"])
def backend(request):
    """Backends shared between processes (memory:// lives inside one process)."""
    return request.param


def leftover_temp_files(store: Store) -> list:
    if store.is_local:
        tmp = store.local_blobs.tmp_dir
        return os.listdir(tmp) if os.path.isdir(tmp) else []
    store.fs.invalidate_cache()
    return store.fs.find(f"{store.root}/tmp")


@pytest.mark.slow
def test_eight_processes_putting_the_same_content(store, store_args, tmp_path):
    url, options = store_args
    size = (24 if store.is_local else 12) * 1024 * 1024  # several chunks: the puts overlap
    data = os.urandom(size)
    src = tmp_path / "same.bin"
    src.write_bytes(data)
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", PUT_CHILD, url, json.dumps(options or {}),
                                  str(src), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(8)]
    time.sleep(0.5)
    go.write_text("go")
    outputs = [c.communicate(timeout=120) for c in children]
    for child, (_out, err) in zip(children, outputs):
        assert child.returncode == 0, err
    expected = f"sha1://{hashlib.sha1(data).hexdigest()}/same.bin"
    assert {out.strip() for out, _err in outputs} == {expected}
    assert store.stats() == StoreStats(count=1, bytes=size)
    assert store.verify(expected)
    assert leftover_temp_files(store) == []


KILLED_CHILD = r"""
import sys
from hither_store import Store, StoreStats
Store(sys.argv[1]).put_file(sys.argv[2])
"""


def _open_fifo_for_writing(path: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until the reader opened it
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        os.set_blocking(fd, True)
        return fd


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_writer_killed_mid_put_leaves_no_blob(tmp_path):
    """The child stores a file fed through a named pipe that never ends: it is stuck mid-put,
    its temporary file growing, when it is killed with SIGKILL."""
    store_dir = str(tmp_path / "store")
    fifo = str(tmp_path / "endless")
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, store_dir, fifo],
                             stderr=subprocess.PIPE, text=True)
    fd = -1
    try:
        fd = _open_fifo_for_writing(fifo, timeout=60)
        part = os.urandom(1024 * 1024)
        os.write(fd, part)
        store = Store(store_dir)
        tmp_dir = store.local_blobs.tmp_dir
        deadline = time.monotonic() + 60
        while True:  # wait until the child has written part of it
            sizes = [os.path.getsize(os.path.join(tmp_dir, n)) for n in os.listdir(tmp_dir)] \
                if os.path.isdir(tmp_dir) else []
            if sizes and max(sizes) > 0:
                break
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.02)
        # mid-write: a reader sees nothing of it
        assert store.stats() == StoreStats(0, 0)
        assert not store.exists(f"sha1://{hashlib.sha1(part).hexdigest()}/endless")
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if fd >= 0:
            os.close(fd)
    assert store.stats() == StoreStats(0, 0)
    assert not os.path.exists(os.path.join(store_dir, "sha1")) or \
        [f for _d, _s, f in os.walk(os.path.join(store_dir, "sha1")) if f] == []
    # the partial file stays in tmp/, invisible; the store keeps working
    assert len(os.listdir(tmp_dir)) == 1
    uri = store.put_bytes(part, name="endless")
    assert store.verify(uri) and store.stats() == StoreStats(1, len(part))
