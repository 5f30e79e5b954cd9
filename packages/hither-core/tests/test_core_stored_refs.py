"""Results that stay in a ``ContentFolder`` (a SlurmJobHandler's ``working_dir/store``):
``transport.store_outputs`` where the job ran, ``outside.document_outcome`` on the reading
side (a ``StoredResult``, or values with download), and ``transport.place_stored_inputs``
for the next job, which gets the reference in its ``args.json``. Property-based: any hither
value, with arrays large enough to go by URI, comes back exactly each way."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hither.content.folder import ContentFolder
from hither.outside.jobdir import array_sink
from hither.values.refs import has_store_refs, is_stored
from hither.runtime import RESULT, decode_value, encode_value
from hither.outside.path import document_outcome
from hither.testing.value_strategies import assert_exact, hither_values, unmapped
from hither.outside.documents import OUTPUTS, place_stored_inputs, store_outputs

INLINE_MAX = 1024  # arrays of this many bytes or more go to the store

big_arrays = st.sampled_from([np.dtype(t) for t in ("<f8", ">i4", "<u2", ">M8[ns]", "S5")]).flatmap(
    lambda dt: hnp.arrays(dt, st.integers(-(-INLINE_MAX // dt.itemsize), 2 * -(-INLINE_MAX // dt.itemsize))))
values = st.recursive(st.one_of(big_arrays, hither_values(2)),
                      lambda inner: st.lists(inner, min_size=1, max_size=3).map(tuple)
                      | st.dictionaries(st.sampled_from(["a", "b", "_hither"]), inner, min_size=1, max_size=3),
                      max_leaves=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(value=values, in_place=st.booleans())
def test_a_result_stays_and_goes_on_by_reference_exactly(value, in_place):
    root = tempfile.mkdtemp(prefix="hither-refs-")
    try:
        folder = ContentFolder(os.path.join(root, "store"))
        first = os.path.join(root, "first")  # the job that made ``value``, as its runner left it
        os.makedirs(os.path.join(first, "arrays"))  # as the runner leaves it
        sink = array_sink(first, "result")
        with open(os.path.join(first, RESULT), "w") as f:
            json.dump({"value": encode_value(value, sink)}, f)
        assert store_outputs(first, folder, inline_max_bytes=INLINE_MAX)
        with open(os.path.join(first, OUTPUTS)) as f:
            doc = json.load(f)
        big = any(os.path.getsize(os.path.join(first, "arrays", n)) >= INLINE_MAX
                  for n in os.listdir(os.path.join(first, "arrays")))
        assert has_store_refs(doc["result"]["value"]) == big
        kept = document_outcome(doc, folder).value
        assert is_stored(kept) == big
        assert_exact(document_outcome(doc, folder, download=True).value, value)
        # the next job's directory holds the reference, and a local array beside it
        second = os.path.join(root, "second")
        local = np.arange(5)
        os.makedirs(os.path.join(second, "arrays"))
        args = encode_value({"x": kept, "y": local}, array_sink(second, "arg"))
        with open(os.path.join(second, "args.json"), "w") as f:
            json.dump(args, f)
        assert len(json.dumps(args)) < 64 * INLINE_MAX  # no array of ``value`` in it
        assert place_stored_inputs(second, folder, arrays_in_place=in_place) == big
        with open(os.path.join(second, "args.json")) as f:
            placed = json.load(f)
        if big:  # in place: the job maps the stored blob; else a copy in its directory
            assert (folder.root in json.dumps(placed)) == in_place
        # as the runner reads them (copy-on-write maps)
        got = unmapped(decode_value(placed, lambda ref: np.load(os.path.join(second, ref), mmap_mode="c")))
        assert_exact(got["y"], local)
        assert_exact(got["x"], value)
        if big:
            assert_exact(unmapped(kept.materialize()), value)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_stored_array_reads_copy_on_write(tmp_path):
    folder = ContentFolder(str(tmp_path / "store"))
    np.save(tmp_path / "a.npy", np.arange(10.0))
    uri = folder.put_file(str(tmp_path / "a.npy"))
    a = folder.load_array(uri)
    a[0] = 99.0
    assert folder.load_array(uri)[0] == 0.0 and folder.load_array(uri, mmap=False)[0] == 0.0
    assert ContentFolder(str(tmp_path / "store")) == folder != ContentFolder(str(tmp_path / "other"))
    with folder.open(uri) as f:
        assert f.read(6) == b"\x93NUMPY"


def test_a_failed_run_keeps_its_own_outputs(tmp_path):
    folder = ContentFolder(str(tmp_path / "store"))
    (tmp_path / "error.json").write_text("{}")
    (tmp_path / RESULT).write_text('{"value": 1}')
    assert not store_outputs(str(tmp_path), folder)
    assert not (tmp_path / OUTPUTS).exists()


def test_placing_content_gone_from_the_store_fails(tmp_path):
    folder = ContentFolder(str(tmp_path / "store"))
    os.makedirs(tmp_path / "job")
    (tmp_path / "job" / "args.json").write_text(json.dumps(
        {"a": {"_hither": "ndarray", "ref": None, "uri": "sha1://" + "0" * 40 + "/a.npy"}}))
    with pytest.raises(FileNotFoundError, match="holds no content"):
        place_stored_inputs(str(tmp_path / "job"), folder)
