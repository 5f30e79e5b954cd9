"""hither-core's Store conformance suite against a tiny dict-backed Store, and against
hither-core's own ``ContentFolder`` (the built-in store of ``hi.File`` and of a Slurm
working folder).

``DictStore`` exists only to prove the suite (``hither.testing.store_conformance``) is
backend-agnostic: it is written for this test, keeps content in a dict, knows nothing of
fsspec or hither-store, and still has to pass every test the fsspec store passes.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import IO, Dict

import numpy as np
import pytest

from hither.errors import HitherError
from hither.content.folder import ContentFolder
from hither.content.hashing import parse_uri
from hither.plugins.interfaces import Store
from hither.testing.store_conformance import StoreConformance


class ContentMissing(HitherError, FileNotFoundError):
    """The DictStore holds no content for a URI."""


class DictStore(Store):
    """Content in a dict keyed by sha1; ``get_path`` writes read-only files under ``spill_dir``."""

    name = "dict-test"

    def __init__(self, spill_dir: "str | Path") -> None:
        self.spill_dir = str(spill_dir)
        self.blobs: Dict[str, bytes] = {}

    def _put(self, data: bytes, name: str) -> str:
        digest = hashlib.sha1(data).hexdigest()
        uri = f"sha1://{digest}/{name}"
        parse_uri(uri)  # a plain file name, or HitherError (before anything is stored)
        self.blobs.setdefault(digest, bytes(data))
        return uri

    def _content(self, uri: str) -> bytes:
        digest, _name = parse_uri(uri)
        try:
            return self.blobs[digest]
        except KeyError:
            raise ContentMissing(f"no content for {uri}") from None

    def put_file(self, path: "str | Path") -> str:
        with open(path, "rb") as f:
            return self._put(f.read(), os.path.basename(os.fspath(path)))

    def put_bytes(self, data: bytes, name: str = "data") -> str:
        return self._put(bytes(data), name)

    def put_array(self, array: "np.ndarray") -> str:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return self._put(buf.getvalue(), "array.npy")

    def get_path(self, uri: str) -> str:
        data = self._content(uri)
        path = os.path.join(self.spill_dir, parse_uri(uri)[0])
        if not os.path.exists(path):
            os.makedirs(self.spill_dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        return path

    def open(self, uri: str) -> IO[bytes]:
        return io.BytesIO(self._content(uri))

    def load_array(self, uri: str, mmap: bool = True) -> np.ndarray:
        if mmap:
            return np.load(self.get_path(uri), mmap_mode="r", allow_pickle=False)
        return np.load(io.BytesIO(self._content(uri)), allow_pickle=False)

    def exists(self, uri: str) -> bool:
        return parse_uri(uri)[0] in self.blobs

    def verify(self, uri: str) -> bool:
        return hashlib.sha1(self._content(uri)).hexdigest() == parse_uri(uri)[0]


class TestDictStoreConformance(StoreConformance):
    picklable = True
    array_name = "array.npy"
    large_file_bytes = 1024 * 1024 + 17  # kept small: the content lives in memory
    large_array_bytes = 2 * 1024 * 1024

    @pytest.fixture
    def store(self, tmp_path: Path) -> DictStore:
        return DictStore(tmp_path / "spill")


class TestContentFolderConformance(StoreConformance):
    picklable = True  # a SlurmJobHandler's result_store travels to workers
    array_name = "array.npy"

    @pytest.fixture
    def store(self, tmp_path: Path) -> ContentFolder:
        return ContentFolder(str(tmp_path / "content"))
