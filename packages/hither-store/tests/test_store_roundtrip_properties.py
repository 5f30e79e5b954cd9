"""Property-based tests (hypothesis): whatever bytes or array goes into the store comes back
exactly (content; dtype with its fields and byte order; shape; memory order), under the URI
of its sha1, the same on every put."""
from __future__ import annotations

import hashlib
import io
import tempfile

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="pip install 'hither-store[test]' (hypothesis) to run "
                    "the property-based tests")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from hither_store import Store

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def local_store():
    with tempfile.TemporaryDirectory(prefix="hither-store-prop-") as d:
        yield Store(d)


@pytest.fixture(scope="module")
def memory_store():
    import uuid

    s = Store(f"memory://hither-prop-{uuid.uuid4().hex[:12]}")
    yield s
    if s.fs.exists(s.root):
        s.fs.rm(s.root, recursive=True)


names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                min_size=1, max_size=40).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)

scalar_dtypes = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="), hnp.complex_number_dtypes(endianness="="),
    hnp.floating_dtypes(endianness=">"), hnp.integer_dtypes(endianness="<"),
    hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(min_len=1, max_len=8), hnp.unicode_string_dtypes(min_len=1, max_len=8),
)
# structured dtypes: fields of any scalar dtype, some of them sub-arrays
dtypes = st.one_of(scalar_dtypes, hnp.array_dtypes(scalar_dtypes, min_size=1, max_size=3,
                                                   allow_subarrays=True))
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))


def layouts(a: np.ndarray):
    """The array as given, Fortran-ordered, and a strided view (every other row reversed)."""
    yield a
    yield np.asfortranarray(a)
    if a.ndim >= 1:
        yield a[::-2]


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def same_array(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.dtype.descr == want.dtype.descr
    assert got.dtype.fields == want.dtype.fields
    assert got.shape == want.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()


@SETTINGS
@given(data=st.binary(max_size=4096), name=names)
def test_bytes_round_trip(local_store, memory_store, data, name):
    for store in (local_store, memory_store):
        uri = store.put_bytes(data, name=name)
        assert uri == f"sha1://{hashlib.sha1(data).hexdigest()}/{name}"
        with store.open(uri) as f:
            assert f.read() == data
        assert store.put_bytes(bytearray(data), name=name) == uri  # any buffer, same URI
        assert store.exists(uri) and store.verify(uri)


@pytest.mark.filterwarnings("ignore:Stored array in format 3.0:UserWarning")  # non-latin-1 field names
@SETTINGS
@given(a=arrays)
def test_array_round_trip(local_store, memory_store, a):
    for store in (local_store, memory_store):
        for x in layouts(a):
            uri = store.put_array(x)
            # exactly the bytes np.save writes, so the URI is the sha1 of that .npy file
            expected = npy_bytes(x)
            assert uri == f"sha1://{hashlib.sha1(expected).hexdigest()}/array.npy"
            with store.open(uri) as f:
                assert f.read() == expected
            for mmap in (True, False):
                got = store.load_array(uri, mmap=mmap)
                same_array(got, x)
            assert store.put_array(x) == uri
