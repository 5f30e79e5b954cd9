"""A job crossing to "another machine": packed through a real content store (hither-store),
rebuilt in a separate folder, run by the runner in a fresh interpreter, outcome carried
back. Large arrays and files must travel as store URIs, small ones inline."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import hither as hi
from hither.outside.jobdir import write_job_dir
from hither.outside.documents import pack_job, pack_outputs, unpack_job, unpack_outputs

sys.path.insert(0, os.path.dirname(__file__))
import transport_funcs as tf  # noqa: E402

hither_store = pytest.importorskip("hither_store")


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    url = str(tmp_path / "store") if request.param == "local" else f"memory://transport-{os.getpid()}-{id(request)}"
    return hither_store.Store(url, cache_dir=str(tmp_path / "store-cache"))


def _run_elsewhere(doc, tmp_path, store):
    there = tmp_path / "there"
    unpack_job(json.loads(json.dumps(doc)), str(there), store)  # only JSON crosses
    proc = subprocess.run([sys.executable, "-I", str(there / "runner.py"), str(there)],
                          capture_output=True, text=True, timeout=120, cwd=str(there))
    assert proc.returncode == 0, proc.stderr
    return json.loads(json.dumps(pack_outputs(str(there), store, inline_max_bytes=1024)))


def test_job_crosses_through_the_store(tmp_path, store):
    big = np.arange(300_000, dtype=np.float64)  # 2.4 MB: must go by URI
    small = np.arange(5, dtype=np.int16)  # inline
    text = tmp_path / "notes.txt"
    text.write_text("hello from here")
    job = tf.describe_inputs.run(big=big, small=small, pair=(1, "a"), text_file=hi.File(str(text)))
    job.wait()
    here = tmp_path / "here"
    here.mkdir()
    write_job_dir(job, str(here))
    doc = pack_job(str(here), store, inline_max_bytes=1024)
    flat = json.dumps(doc)
    assert len(flat) < 100_000, "the big array must not travel inside the document"
    big_node = doc["args"]["big"]
    assert big_node["uri"].startswith("sha1://") and store.exists(big_node["uri"])
    assert doc["args"]["small"]["inline"]
    assert doc["args"]["text_file"]["uri"] == hi.File(str(text)).uri
    shutil.rmtree(here)
    os.unlink(text)  # the other side must not need anything of ours but the store
    back = _run_elsewhere(doc, tmp_path, store)
    assert "uri" in back["result"]["value"]["big_doubled"]
    status, value, error, ri = unpack_outputs(back, str(tmp_path / "back"), store)
    assert error is None, error
    assert status == hi.JobStatus.FINISHED
    np.testing.assert_array_equal(value["big_doubled"], big * 2)
    assert value["small_sum"] == 10.0 and value["pair"] == (1, "a")
    assert value["text"] == "HELLO FROM HERE"
    assert "got (300000,) (5,)" in ri["stdout"]


def test_file_result_comes_back_through_the_store(tmp_path, store, monkeypatch):
    monkeypatch.setenv("HITHER_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)  # making the Job runs it here too (DefaultJobHandler)
    job = tf.write_report.run(text="report body", out_name="report.txt")
    here = tmp_path / "here"
    here.mkdir()
    write_job_dir(job, str(here))
    back = _run_elsewhere(pack_job(str(here), store), tmp_path, store)
    shutil.rmtree(tmp_path / "there")
    status, value, error, ri = unpack_outputs(back, str(tmp_path / "back"), store)
    assert error is None, error
    assert isinstance(value, hi.File)
    with open(value.resolve()) as f:
        assert f.read() == "report body"


def test_error_crosses_back_with_its_type(tmp_path, store):
    job = tf.describe_inputs.run(big=np.zeros(3), small=np.zeros(2), pair=(1,), text_file=hi.File(__file__))
    job.wait()
    here = tmp_path / "here"
    here.mkdir()
    write_job_dir(job, str(here))
    doc = pack_job(str(here), store)
    doc["args"]["pair"] = 5  # make the function fail remotely: 'pair' is fine, break 'big'
    doc["args"]["big"] = "not an array"
    back = _run_elsewhere(doc, tmp_path, store)
    status, value, error, ri = unpack_outputs(back, str(tmp_path / "back"), store)
    assert status == hi.JobStatus.ERROR
    assert isinstance(error, AttributeError)
    assert "describe_inputs" in error.remote_traceback


def test_a_job_writing_into_its_input_file_leaves_the_store_intact(tmp_path, store, monkeypatch):
    """Store blobs are cloned or copied into the job directory, never hard-linked: a job
    (out of process) that rewrites its input file in place changes its own copy only."""
    from hither.testing.container_conformance import ParkedHandler

    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "file-store"))  # hi.File's own store
    text = tmp_path / "input.txt"
    content = b"original content of the input file\n" * 100
    text.write_bytes(content)
    uri = store.put_file(str(text))
    digest = uri[len("sha1://"):].split("/")[0]
    with hi.Config(job_handler=ParkedHandler()):  # written into a job directory, never run here
        job = tf.scribble_on_input.run(text_file=hi.File(str(text)))
    here = tmp_path / "here"
    here.mkdir()
    write_job_dir(job, str(here))
    job.cancel()
    doc = pack_job(str(here), store)
    assert doc["args"]["text_file"]["uri"] == uri
    back = _run_elsewhere(doc, tmp_path, store)
    status, value, error, ri = unpack_outputs(back, str(tmp_path / "back"), store)
    assert error is None, error
    assert value.startswith("SCRIBBLED")  # the job did change the file it was given
    local = tmp_path / "there" / "files" / digest / "input.txt"
    assert local.read_bytes().startswith(b"SCRIBBLED")
    blob = store.get_path(uri)  # a local store's blob, or a memory store's cached copy
    assert os.stat(local).st_ino != os.stat(blob).st_ino
    with open(blob, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == digest, "the job rewrote the store's blob"
    assert store.verify(uri) is True
