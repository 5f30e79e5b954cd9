"""Bounded memory: a 2 GB file and a large array are stored without holding them in memory.

Each measurement runs in a fresh subprocess and reads its peak RSS (``ru_maxrss``) before
and after the put.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")  # POSIX only

GIB = 1024 ** 3
MAX_GROWTH_MB = 100

MEASURE = r"""
import json, resource, sys
import numpy as np
from hither_store import Store
store = Store(sys.argv[1])
what, arg = sys.argv[2], sys.argv[3]
store.put_bytes(b"warm-up")
if what == "array":
    value = np.ones(int(arg) // 8)  # allocated (and counted) before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
uri = store.put_file(arg) if what == "file" else store.put_array(value)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux, bytes on macOS
print(json.dumps({"uri": uri, "growth_mb": (after - before) * scale / 2**20}))
"""


def _measure(store_dir: str, what: str, arg: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, store_dir, what, arg],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _sha1_of_zeros(n: int) -> str:
    h = hashlib.sha1()
    block = bytes(8 * 1024 * 1024)
    while n:
        step = min(n, len(block))
        h.update(block[:step])
        n -= step
    return h.hexdigest()


@pytest.mark.slow
def test_put_file_of_2_gb_in_bounded_memory(tmp_path):
    src = tmp_path / "sparse.bin"
    with open(src, "wb") as f:
        f.truncate(2 * GIB)  # sparse: no disk used for the source
    store_dir = tmp_path / "store"
    result = _measure(str(store_dir), "file", str(src))
    assert result["growth_mb"] < MAX_GROWTH_MB, result
    assert result["uri"] == f"sha1://{_sha1_of_zeros(2 * GIB)}/sparse.bin"
    blob = store_dir / "sha1" / result["uri"][7:9] / result["uri"][9:11] / result["uri"][7:47]
    assert blob.stat().st_size == 2 * GIB
    os.remove(blob)  # 2 GB of real disk: give it back at once


def test_put_array_does_not_copy_the_array(tmp_path):
    nbytes = 256 * 1024 * 1024
    result = _measure(str(tmp_path / "store"), "array", str(nbytes))
    assert result["growth_mb"] < 64, result
    assert result["uri"].endswith("/array.npy")
