"""A job packed for the bus (``hither.outside.path.prepare_document``, as RemoteJobHandler does)
and rebuilt on the resource (``hither.outside.documents.unpack_job``): the code goes to the store
straight from the function's bundle (no ``code.zip`` through the client's throw-away job
directory), and the rebuilt directory runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import hither as hi
import hither.config as _config
from hither.jobs.job import Job
from hither.outside.path import prepare_document
from hither.outside.documents import unpack_job

import remote_funcs as cf
from hither_store import Store


def test_a_packed_job_carries_its_bundle_from_the_store_and_runs_where_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "client-tmp"))
    store = Store(str(tmp_path / "store"), cache_dir=str(tmp_path / "store-cache"))
    job = Job(cf.rt_add, {"x": 2, "y": 40}, _config.current(), hi.DefaultJobHandler(), None, [])
    doc = prepare_document(job, store)
    bundle_zip = cf.rt_add.code_bundle().zip_bytes()
    assert doc["code"] == store.put_bytes(bundle_zip, name="code.zip")
    with open(store.get_path(doc["code"]), "rb") as f:
        assert f.read() == bundle_zip
    assert doc["spec"]["function_name"] == "rt_add" and doc["spec"]["code_hash"] == cf.rt_add.code_bundle().code_hash
    # nothing left of the throw-away job directory
    left = os.listdir(tmp_path / "client-tmp") if os.path.isdir(tmp_path / "client-tmp") else []
    assert not any(n.startswith("hither-job-") for n in left), left

    # "the other machine": a fresh folder, the runner in a fresh interpreter
    job_dir = tempfile.mkdtemp(dir=str(tmp_path))
    unpack_job(json.loads(json.dumps(doc)), job_dir, store)
    assert sorted(n for n in os.listdir(job_dir) if n.endswith((".json", ".zip", ".py"))) == [
        "args.json", "code.zip", "runner.py", "spec.json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-I", os.path.join(job_dir, "runner.py"), job_dir],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(job_dir, "result.json")) as f:
        assert json.load(f)["value"] == 42


def _through_a_directory(job: Job, store: Store) -> dict:
    """The document as packed through a throw-away job directory (the path for arrays and files)."""
    import shutil

    from hither.outside.documents import pack_job
    from hither.outside.path import prepare

    code_uri = store.put_bytes(job.function.code_bundle().zip_bytes(), name="code.zip")
    job_dir = prepare(job, code=False)
    try:
        return pack_job(job_dir, store, code_uri=code_uri)
    finally:
        shutil.rmtree(job_dir)


def test_a_job_without_arrays_or_files_is_packed_without_a_directory_into_the_same_document(tmp_path, monkeypatch):
    import numpy as np

    import hither.outside.path as path

    made = []  # the job directories prepare_document writes (a spy: prepare itself runs)
    real_prepare = path.prepare
    monkeypatch.setattr(path, "prepare", lambda job, *a, **k: made.append(job.id) or real_prepare(job, *a, **k))
    store = Store(str(tmp_path / "store"), cache_dir=str(tmp_path / "store-cache"))
    plain = [{"x": 2, "y": 40}, {"x": (1, 2.5, "a"), "y": {"k": [None, True, {"n": -3}]}},
             {"x": "é\n", "y": 10 ** 30}]
    for kwargs in plain:
        job = Job(cf.rt_add, kwargs, _config.current(), hi.DefaultJobHandler(), None, [])
        doc = prepare_document(job, store)
        assert made == [], kwargs
        assert doc == _through_a_directory(job, store), kwargs
        made.clear()
    src = tmp_path / "in.txt"
    src.write_text("hello")
    for kwargs in ({"x": np.arange(5), "y": 1}, {"x": hi.File(str(src)), "y": 1}):
        job = Job(cf.rt_add, kwargs, _config.current(), hi.DefaultJobHandler(), None, [])
        doc = prepare_document(job, store)
        assert made == [job.id], kwargs
        assert doc == _through_a_directory(job, store), kwargs
        made.clear()


def test_a_job_server_runs_a_job_directory_unpacked_without_its_runner_file(tmp_path):
    # The resource leaves runner.py (~260 KB) out of a job directory whose launcher holds
    # the runtime itself (the job server); a container job, or a launcher that runs the
    # file, still gets it.
    from hither.outside.jobserver import JobServerLauncher
    from hither.outside.path import SubprocessLauncher
    from hither_remote.resource_containers import ResourceLauncher

    store = Store(str(tmp_path / "store"), cache_dir=str(tmp_path / "store-cache"))
    job = Job(cf.rt_add, {"x": 2, "y": 40}, _config.current(), hi.DefaultJobHandler(), None, [])
    doc = prepare_document(job, store)
    server = JobServerLauncher(capacity=1)
    try:
        rl = ResourceLauncher(server, containers=False)
        assert not rl.runner_file_needed(doc["spec"])
        assert rl.runner_file_needed(dict(doc["spec"], container="docker://python:3.11-slim"))
        assert ResourceLauncher(SubprocessLauncher(), containers=False).runner_file_needed(doc["spec"])
        job_dir = str(tmp_path / "job")
        unpack_job(json.loads(json.dumps(doc)), job_dir, store, runner=rl.runner_file_needed(doc["spec"]))
        assert not os.path.exists(os.path.join(job_dir, "runner.py"))
        assert rl.launch(job_dir, 60) == 0
    finally:
        server.close()
    with open(os.path.join(job_dir, "result.json")) as f:
        assert json.load(f)["value"] == 42


def test_an_outcome_without_arrays_or_files_is_read_without_a_scratch_folder(tmp_path, monkeypatch):
    # What the client does with each outcome from the bus (document_outcome): a result
    # without arrays or files is decoded in memory, the same outcome the scratch folder
    # gives; an error, arrays and files still go through the folder.
    import numpy as np

    from hither.outside.documents import outputs_in_memory, unpack_outputs
    from hither.outside.path import document_outcome

    scratch_base = tmp_path / "client-tmp"
    monkeypatch.setenv("HITHER_TEMP_DIR", str(scratch_base))
    store = Store(str(tmp_path / "store"), cache_dir=str(tmp_path / "store-cache"))
    src = tmp_path / "out.txt"
    src.write_text("hello")
    runtime = {"host": "h", "elapsed": 0.5}
    plain = [42, {"a": (1, 2), "b": [None, 1.5, "é"]}, 10 ** 30]
    for value in plain:
        doc = _outputs_doc(tmp_path, store, value, runtime)
        got = document_outcome(doc, store)
        assert not scratch_base.exists(), value  # no scratch folder made
        ref = unpack_outputs(doc, str(tmp_path / "scratch"), store)
        assert got == ref and got.value == value, value
    for value in (np.arange(3), hi.File(str(src))):
        doc = _outputs_doc(tmp_path, store, value, runtime)
        assert outputs_in_memory(doc) is None
    assert outputs_in_memory({"runtime": runtime, "error": {"type": "ValueError", "message": "x"}}) is None


def _outputs_doc(tmp_path, store, value, runtime):
    """A pack_outputs document of a run that returned ``value``, written as a runner writes it."""
    import shutil

    from hither.outside.documents import pack_outputs
    from hither.outside.jobdir import array_sink
    from hither.runtime import encode_value

    job_dir = tmp_path / "ran"
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir()
    encoded = encode_value(value, array_sink(str(job_dir), "result"))
    (job_dir / "result.json").write_text(json.dumps({"value": encoded}))
    (job_dir / "runtime.json").write_text(json.dumps(runtime))
    return json.loads(json.dumps(pack_outputs(str(job_dir), store)))
