"""Conformance tests every ``hither.plugins.interfaces.Store`` must pass (needs pytest).

A store's test module subclasses :class:`StoreConformance` and provides a fixture
``store``: an empty store of the implementation under test (fresh for each test). The
suite does not define ``store`` itself, so the fixture may come from the subclass, the test
module or a ``conftest.py`` (parametrize it to run the suite against several locations).
Example::

    from hither.testing.store_conformance import StoreConformance
    from my_store import MyStore

    class TestMyStoreConformance(StoreConformance):
        picklable = True

        @pytest.fixture(params=["folder", "bucket"])
        def store(self, request, tmp_path):
            return MyStore.open(request.param, tmp_path)

What it checks is what the interface promises: ``put_file``/``put_bytes``/``put_array``
return ``sha1://<40 hex>/<name>`` URIs whose hex is the sha1 of the content (for arrays: of
the bytes ``np.save(..., allow_pickle=False)`` writes); the same content gives the same URI;
``get_path`` is a readable local file and ``open`` a binary file object with that content;
``load_array`` gives back dtype, shape and values (memory-mapped or not); ``exists`` and
``verify``; content never stored and malformed URIs raise a ``hither.errors.HitherError``.

Class attributes tune it: ``picklable`` (True: the store must survive pickling; False: it
need not, the pickle test is skipped; None, the default: tested when ``pickle.dumps``
accepts it), ``array_name`` (the name ``put_array`` must give its URIs; None: any plain
name), ``large_file_bytes`` and ``large_array_bytes`` (sizes of the "large" puts).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from hither.errors import HitherError
from hither.values.file import File
from hither.plugins.interfaces import Store

_URI = re.compile(r"sha1://([0-9a-f]{40})/([^/\\]+)")


def sha1(data: bytes) -> str:
    """The sha1 (40 lowercase hex digits) of ``data``."""
    return hashlib.sha1(data).hexdigest()


def npy_bytes(arr: np.ndarray) -> bytes:
    """The bytes ``np.save`` writes for ``arr`` (what ``put_array`` must store)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def split_uri(uri: str) -> Tuple[str, str]:
    """(hex, name) of a well-formed ``sha1://<40 hex>/<name>`` URI; fails the test otherwise."""
    assert isinstance(uri, str), f"a store URI is a str, not {type(uri).__name__}"
    m = _URI.fullmatch(uri)
    assert m is not None, f"{uri!r} is not of the form sha1://<40 lowercase hex>/<plain file name>"
    assert m.group(2) not in (".", ".."), f"{uri!r}: the name is not a plain file name"
    return m.group(1), m.group(2)


def read_path(path: str) -> bytes:
    """The content of the local file ``path`` (which must exist)."""
    assert isinstance(path, str), f"get_path returns a str, not {type(path).__name__}"
    assert os.path.isfile(path), f"get_path returned {path!r}, which is not a local file"
    with open(path, "rb") as f:
        return f.read()


def read_uri(store: Store, uri: str) -> bytes:
    """The content of ``uri`` read through ``store.open``."""
    with store.open(uri) as f:
        return f.read()


def assert_same_array(got: Any, want: np.ndarray) -> None:
    """``got`` is an array equal to ``want`` in dtype, shape and values (NaN equals NaN);
    Fortran order is kept."""
    assert isinstance(got, np.ndarray), f"{type(got).__name__} is not an array"
    assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_array_equal(got, want)
    if want.ndim > 1 and want.flags.f_contiguous and not want.flags.c_contiguous:
        assert got.flags.f_contiguous, "a Fortran-ordered array came back in C order"


#: arrays ``put_array``/``load_array`` must round-trip (including empty and 0-d ones)
ARRAYS: Dict[str, np.ndarray] = {
    "float64": np.arange(1000, dtype=np.float64),
    "float32_nan": np.array([1.5, np.nan, -np.inf], dtype=np.float32),
    "int8": np.arange(-5, 5, dtype=np.int8),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": np.arange(600, dtype=np.int32).reshape(20, 30)[::3, ::2],
    "three_d": np.arange(24, dtype=np.int16).reshape(2, 3, 4),
    "scalar": np.array(7, dtype=np.int16),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "structured": np.zeros(4, dtype=[("a", "<i4"), ("b", ">f8")]),
    "big-endian": np.arange(10, dtype=">u4"),
    "bool": np.array([True, False, True]),
    "unicode": np.array(["hither", "store"]),
    "bytes": np.array([b"ab", b"c"]),
    "datetime": np.array(["2024-01-01", "1970-01-02"], dtype="datetime64[D]"),
    "complex": np.arange(5) * (1 + 2j),
}

#: malformed URIs; ``{hex}`` is replaced by a digest (of stored content, and of content never
#: stored) so a missing name check cannot hide behind a "not found"
BAD_URIS: List[str] = [
    "sha1://../../etc/passwd",
    "sha1://{hex}/../../etc/passwd",
    "sha1://{hex}/sub/dir.txt",
    "sha1://{hex}/..",
    "sha1://{hex}/.",
    "sha1://{hex}/back\\slash",
    "sha1://{HEX}/upper.txt",
    "sha1://{short}/short.txt",
    "sha1://{long}/long.txt",
    "sha1://{nonhex}/nonhex.txt",
    "md5://{md5}/x",
    "/etc/passwd",
    "",
]

#: names ``put_bytes`` must refuse (they are not plain file names)
BAD_NAMES: List[str] = ["../escape.txt", "a/b.txt", "..", "back\\slash"]


def bad_uri(template: str, digest: str) -> str:
    """``template`` of :data:`BAD_URIS` made concrete with ``digest``."""
    return template.format(hex=digest, HEX=digest.upper(), short=digest[:39], long=digest + "0",
                           nonhex="g" + digest[1:], md5=digest[:32])


class StoreConformance:
    """The behaviour tests of a ``hither.plugins.interfaces.Store``; subclass it and provide a
    ``store`` fixture (in the class, the module or a conftest)::

        class TestDictStoreConformance(StoreConformance):
            picklable = True

            @pytest.fixture
            def store(self, tmp_path):
                return DictStore(tmp_path / "paths")
    """

    #: True: the store must survive pickling; False: skip that test; None: test it when
    #: ``pickle.dumps`` accepts the store
    picklable: Optional[bool] = None
    #: the name every ``put_array`` URI must carry (None: any plain file name)
    array_name: Optional[str] = None
    #: size of the large file put by ``test_put_large_file``
    large_file_bytes: int = 5 * 1024 * 1024 + 12345
    #: size of the base array of the large strided view put by ``test_put_array_large_strided_view``
    large_array_bytes: int = 6 * 1024 * 1024

    # ------------------------------------------------------------------ basics
    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        assert isinstance(store.name, str) and store.name, "a Store has a registry name"

    def test_empty_store_has_nothing(self, store: Store) -> None:
        assert store.exists(f"sha1://{sha1(b'never stored')}/x.txt") is False
        assert store.exists(f"sha1://{sha1(b'')}/empty") is False

    # ------------------------------------------------------------------ put_bytes
    def test_put_bytes_round_trip(self, store: Store) -> None:
        data = b"hello hither"
        uri = store.put_bytes(data, name="greeting.txt")
        assert uri == f"sha1://{sha1(data)}/greeting.txt"
        split_uri(uri)
        assert store.exists(uri) is True
        assert read_uri(store, uri) == data
        assert read_path(store.get_path(uri)) == data
        assert store.verify(uri) is True

    def test_put_bytes_default_name(self, store: Store) -> None:
        data = bytes(range(256)) * 10
        assert store.put_bytes(data) == f"sha1://{sha1(data)}/data"

    def test_the_name_is_only_a_label(self, store: Store) -> None:
        uri = store.put_bytes(b"labelled", name="one.txt")
        other = f"sha1://{sha1(b'labelled')}/other.txt"  # same content, never put by that name
        assert store.exists(other) is True
        assert read_uri(store, other) == b"labelled"
        assert read_path(store.get_path(other)) == b"labelled"
        assert store.verify(other) is True
        assert store.put_bytes(b"labelled", name="other.txt") == other
        assert read_uri(store, uri) == b"labelled"

    def test_same_content_same_uri(self, store: Store, tmp_path: Path) -> None:
        data = b"stored once, addressed alike"
        uri = store.put_bytes(data, name="same.bin")
        assert store.put_bytes(data, name="same.bin") == uri
        path = tmp_path / "same.bin"
        path.write_bytes(data)
        assert store.put_file(path) == uri
        assert store.put_file(str(path)) == uri
        assert read_uri(store, uri) == data

    def test_different_content_different_uri(self, store: Store) -> None:
        a = store.put_bytes(b"content A", name="x")
        b = store.put_bytes(b"content B", name="x")
        assert a != b
        assert read_uri(store, a) == b"content A" and read_uri(store, b) == b"content B"

    def test_put_empty_bytes(self, store: Store) -> None:
        uri = store.put_bytes(b"", name="nothing")
        assert uri == f"sha1://{sha1(b'')}/nothing"
        assert read_uri(store, uri) == b""
        assert read_path(store.get_path(uri)) == b""
        assert store.verify(uri) is True

    def test_binary_content_is_kept_byte_for_byte(self, store: Store) -> None:
        data = b"\x00\r\n\x1a\xff" * 1000 + b"\r"  # no newline or text translation
        uri = store.put_bytes(data, name="raw.bin")
        assert read_uri(store, uri) == data
        assert read_path(store.get_path(uri)) == data

    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_bad_names_are_rejected_before_storing(self, store: Store, name: str) -> None:
        with pytest.raises(HitherError):
            store.put_bytes(b"x", name=name)
        assert store.exists(f"sha1://{sha1(b'x')}/x") is False

    # ------------------------------------------------------------------ put_file
    def test_put_file_uri_is_hi_file_uri(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "table.csv"
        path.write_bytes(b"a,b\n1,2\n")
        uri = store.put_file(path)
        assert uri == File(str(path)).uri == f"sha1://{sha1(b'a,b' + bytes([10]) + b'1,2' + bytes([10]))}/table.csv"
        assert read_uri(store, uri) == b"a,b\n1,2\n"
        assert read_path(store.get_path(uri)) == b"a,b\n1,2\n"
        assert store.exists(uri) and store.verify(uri)

    def test_put_file_accepts_str_and_path(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_bytes(b"as str and as Path")
        assert store.put_file(str(path)) == store.put_file(path) == \
            f"sha1://{sha1(b'as str and as Path')}/notes.txt"

    def test_put_large_file(self, store: Store, tmp_path: Path) -> None:
        data = os.urandom(self.large_file_bytes)
        path = tmp_path / "big.bin"
        path.write_bytes(data)
        uri = store.put_file(path)
        assert uri == f"sha1://{sha1(data)}/big.bin"
        assert store.verify(uri) is True
        assert read_path(store.get_path(uri)) == data
        assert read_uri(store, uri) == data

    def test_put_empty_file(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "empty"
        path.write_bytes(b"")
        uri = store.put_file(path)
        assert uri == f"sha1://{sha1(b'')}/empty"
        assert read_uri(store, uri) == b""
        assert read_path(store.get_path(uri)) == b""

    def test_put_file_leaves_the_file_alone(self, store: Store, tmp_path: Path) -> None:
        path = tmp_path / "source.txt"
        path.write_bytes(b"keep me")
        uri = store.put_file(path)
        assert path.read_bytes() == b"keep me"
        path.write_bytes(b"changed afterwards")  # the store holds its own copy
        assert read_uri(store, uri) == b"keep me"
        assert store.verify(uri) is True

    # ------------------------------------------------------------------ arrays
    @pytest.mark.parametrize("mmap", [True, False], ids=["mmap", "no-mmap"])
    @pytest.mark.parametrize("kind", sorted(ARRAYS))
    def test_put_array_stores_exactly_what_np_save_writes(self, store: Store, kind: str,
                                                          mmap: bool) -> None:
        arr = ARRAYS[kind]
        uri = store.put_array(arr)
        digest, name = split_uri(uri)
        assert digest == sha1(npy_bytes(arr))
        if self.array_name is not None:
            assert name == self.array_name
        assert read_uri(store, uri) == npy_bytes(arr)
        assert read_path(store.get_path(uri)) == npy_bytes(arr)
        assert store.verify(uri) is True
        assert_same_array(store.load_array(uri, mmap=mmap), arr)

    def test_load_array_default_is_the_same_array(self, store: Store) -> None:
        arr = np.arange(100.0).reshape(10, 10)
        uri = store.put_array(arr)
        assert_same_array(store.load_array(uri), arr)

    def test_same_array_same_uri(self, store: Store) -> None:
        arr = np.arange(50, dtype=np.int32)
        uri = store.put_array(arr)
        assert store.put_array(arr.copy()) == uri
        # the .npy bytes put as bytes are the same content
        assert split_uri(store.put_bytes(npy_bytes(arr), name="x.npy"))[0] == split_uri(uri)[0]
        assert store.put_array(arr + 1) != uri

    def test_put_array_large_strided_view(self, store: Store) -> None:
        n = self.large_array_bytes // 8 // 64 * 64
        base = np.arange(n, dtype=np.float64).reshape(-1, 64)
        view = base[:, ::2]  # not contiguous
        uri = store.put_array(view)
        assert split_uri(uri)[0] == sha1(npy_bytes(view))
        if self.array_name is not None:
            assert uri == f"sha1://{sha1(npy_bytes(view))}/{self.array_name}"
        for mmap in (True, False):
            assert_same_array(store.load_array(uri, mmap=mmap), view)

    def test_changing_a_loaded_array_leaves_the_store_alone(self, store: Store) -> None:
        arr = np.arange(100.0)
        uri = store.put_array(arr)
        for mmap in (True, False, True):
            loaded = store.load_array(uri, mmap=mmap)
            if loaded.flags.writeable:  # a copy (or a private map) may be changed by its user
                loaded[:3] = -1.0
        assert_same_array(store.load_array(uri, mmap=False), arr)
        assert_same_array(store.load_array(uri, mmap=True), arr)
        assert read_uri(store, uri) == npy_bytes(arr)
        assert store.verify(uri) is True

    # ------------------------------------------------------------------ missing / malformed
    def test_missing_content(self, store: Store) -> None:
        uri = f"sha1://{sha1(b'never stored')}/x.txt"
        assert store.exists(uri) is False
        for call in (store.get_path, store.open, store.load_array):
            with pytest.raises(HitherError):
                call(uri)
        # verify of content the store does not hold: an error, or False; never True
        try:
            ok = store.verify(uri)
        except HitherError:
            pass
        else:
            assert ok is False, "verify() says True for content that was never stored"

    def test_other_content_is_missing(self, store: Store) -> None:
        store.put_bytes(b"neighbour")
        uri = f"sha1://{sha1(b'neighbour!')}/data"  # a near miss: other content is not found
        assert store.exists(uri) is False
        with pytest.raises(HitherError):
            store.get_path(uri)

    @pytest.mark.parametrize("template", BAD_URIS)
    def test_malformed_uris_are_rejected(self, store: Store, template: str) -> None:
        stored = split_uri(store.put_bytes(b"present", name="present.txt"))[0]
        for digest in (stored, "a" * 40):
            uri = bad_uri(template, digest)
            for call in (store.get_path, store.open, store.exists, store.verify, store.load_array):
                with pytest.raises(HitherError):
                    call(uri)

    # ------------------------------------------------------------------ pickling
    def test_store_survives_pickling(self, store: Store) -> None:
        if self.picklable is False:
            pytest.skip("this store does not support pickling (picklable = False)")
        uri = store.put_bytes(b"pickled")
        arr_uri = store.put_array(np.arange(6).reshape(2, 3))
        try:
            dumped = pickle.dumps(store)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if self.picklable:
                raise
            pytest.skip(f"the store does not pickle ({type(exc).__name__}: {exc}); set "
                        "picklable = True to require it")
        clone = pickle.loads(dumped)
        assert isinstance(clone, Store) and type(clone) is type(store)
        assert clone.exists(uri) is True
        assert read_uri(clone, uri) == b"pickled"
        assert read_path(clone.get_path(uri)) == b"pickled"
        assert clone.verify(uri) is True
        assert_same_array(clone.load_array(arr_uri), np.arange(6).reshape(2, 3))
        new = clone.put_bytes(b"put through the clone")
        assert read_uri(clone, new) == b"put through the clone"
        # the original is unaffected by having been pickled
        assert read_uri(store, uri) == b"pickled"


__all__ = ["StoreConformance", "ARRAYS", "BAD_NAMES", "BAD_URIS", "assert_same_array", "bad_uri",
           "npy_bytes", "read_path", "read_uri", "sha1", "split_uri"]
