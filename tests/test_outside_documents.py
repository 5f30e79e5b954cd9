"""The outside path across a machine boundary, as hither-remote and hither-slurm use it:
``prepare_document`` packs a job through a real content store (hither-store), a separate
"resource" folder unpacks and runs it with the runner in a fresh interpreter, and
``collect_document`` reports the outcome. Results whose arrays or files are in the store
stay there (``hither.values.refs.StoredResult``) until read, and travel between jobs on a handler
that reads the same store as URIs, never through this process."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading

import numpy as np
import pytest

import hither as hi
from hither.plugins.interfaces import JobHandler
from hither.outside.path import SubprocessLauncher, collect_document, launch_timeout, prepare_document
from hither.values.refs import StoredResult
from hither.testing.handler_conformance import JobHandlerConformance
from hither.outside.documents import pack_outputs, unpack_job

sys.path.insert(0, os.path.dirname(__file__))
import transport_funcs as tf  # noqa: E402

hither_store = pytest.importorskip("hither_store")


class LoopbackResource(JobHandler):
    """A real handler that leaves the machine the way a remote one does, with both sides in
    this test: only JSON documents and the store pass between them (each document goes
    through json.dumps/loads), the resource side works in a folder of its own."""

    name = "loopback"
    crosses_machine = True
    containers_run_here = False
    needs_code_bundle = True
    supports_timeout = True

    def __init__(self, store, resource_dir):
        self.result_store = store
        self.resource_dir = resource_dir
        self.documents = []
        self.slots = threading.Semaphore(2)  # the resource runs two jobs at a time

    def submit(self, job, inline):
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _run(self, job):
        with self.slots:
            self._run_one(job)

    def _run_one(self, job):
        job.report_running()
        try:
            doc = json.loads(json.dumps(prepare_document(job, self.result_store, inline_max_bytes=4096)))
            self.documents.append(doc)
            there = tempfile.mkdtemp(dir=self.resource_dir)
            unpack_job(doc, there, self.result_store)
            code = SubprocessLauncher().launch(there, launch_timeout(job))
            back = json.loads(json.dumps(pack_outputs(there, self.result_store, inline_max_bytes=4096)))
            shutil.rmtree(there)
            back["exit_code"] = code
            collect_document(job, back, self.result_store)
        except Exception as exc:  # noqa: BLE001
            job.report_error(exc)

    def cancel(self, job):
        return False


@pytest.fixture
def remote(tmp_path):
    store = hither_store.Store(f"memory://outside-{os.getpid()}-{id(tmp_path)}",
                               cache_dir=str(tmp_path / "store-cache"))
    (tmp_path / "resource").mkdir()
    return LoopbackResource(store, str(tmp_path / "resource"))


def test_results_stay_in_the_store_and_travel_as_uris(remote):
    with hi.Config(job_handler=remote):
        a = tf.make_ones.run(n=100_000)           # 800 KB: stays in the store
        b = tf.add_to.run(x=a, y=1.0)              # same store: gets the URI
        b.wait_done(120)
    from hither.values.refs import _UNSET

    assert isinstance(a._result, StoredResult) and isinstance(b._result, StoredResult)
    # b's document carried a's array by URI, and nothing was read here to make it
    args_b = remote.documents[1]["args"]
    assert args_b["x"]["uri"].startswith("sha1://") and "inline" not in args_b["x"]

    assert a._result._value is _UNSET, "a's result was downloaded to the client"
    np.testing.assert_array_equal(b.get_result(), np.full(100_000, 2.0))
    np.testing.assert_array_equal(a.get_result(), np.ones(100_000))  # read on demand


def test_download_results_brings_values_home(remote):
    with hi.Config(job_handler=remote, download_results=True):
        a = tf.make_ones.run(n=100_000)
        a.wait(120)
    assert isinstance(a._result, np.ndarray)
    np.testing.assert_array_equal(a.get_result(), np.ones(100_000))


def test_a_local_job_reads_a_stored_result(remote):
    with hi.Config(job_handler=remote):
        a = tf.make_ones.run(n=50_000)
    b = tf.add_to.run(x=a, y=2.0)  # the default handler, here: the value is read for it
    np.testing.assert_array_equal(b.wait(120), np.full(50_000, 3.0))


def test_small_results_and_errors_come_back_inline(remote, tmp_path):
    with hi.Config(job_handler=remote):
        s = tf.add_to.run(x=1, y=2)
        f = tf.write_report.run(text="report body", out_name="r.txt")
        bad = tf.add_to.run(x="a", y=1)
        assert s.wait(120) == 3
        with pytest.raises(TypeError):
            bad.wait(120)
        report = f.wait(120)
    assert isinstance(report, hi.File) and report.read_text() == "report body"


def test_a_stored_result_is_cached_as_its_value(remote, tmp_path):
    jc = hi.JobCache(path=str(tmp_path / "jc"))
    with hi.Config(job_handler=remote, job_cache=jc):
        a = tf.make_ones.run(n=30_000)
        a.wait(120)
    with hi.Config(job_cache=jc):  # a local run now hits the cache
        again = tf.make_ones.run(n=30_000)
        np.testing.assert_array_equal(again.wait(60), np.ones(30_000))
    assert again.get_runtime_info().cached


class TestLoopbackConformance(JobHandlerConformance):
    """A handler that crosses machines through documents passes the handler suite."""

    cancels_running = False  # this test handler has no way to reach the resource side

    @pytest.fixture
    def handler(self, tmp_path):
        store = hither_store.Store(f"memory://outside-conf-{os.getpid()}-{id(tmp_path)}",
                                   cache_dir=str(tmp_path / "store-cache"))
        (tmp_path / "resource").mkdir()
        return LoopbackResource(store, str(tmp_path / "resource"))


def test_nested_wire_forms_cross_machines(remote):
    """Arrays nested in any wire form (a structured scalar travels as a 0-d array; a dict
    with a '_hither' key as tagged items) are packed and unpacked too."""
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)
    scalar = np.array([(3, 2.5)], dt)[0]
    value = {"s": scalar, "tagged": {"_hither": "not a tag", "arr": np.arange(3)}, "t": (np.ones(2),)}
    with hi.Config(job_handler=remote):
        got = tf.echo_value.run(x=value).wait(120)
    assert got["s"].dtype == dt and got["s"]["a"] == 3 and got["s"]["b"] == 2.5
    np.testing.assert_array_equal(got["tagged"]["arr"], np.arange(3))
    assert got["tagged"]["_hither"] == "not a tag" and isinstance(got["t"], tuple)
