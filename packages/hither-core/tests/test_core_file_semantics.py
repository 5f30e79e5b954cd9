"""``hi.File`` is a stored file: its content is fixed when it is made (issue 12).

These run with hither-core alone (the built-in content folder) as well as with
hither-store installed (its local store); the store is a folder of the test's own
(``$HITHER_STORE_URL``), which ParallelJobHandler workers inherit.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hither as hi
from hither.values import codec as serialization
from hither.errors import WorkerDiedError
from hither.content.folder import ContentFolder, builtin_folder, clone_or_copy, file_store
from hither.content.stores import set_default_store

import file_funcs as ff


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch):
    """A fresh store folder for each test (set before any worker of the test starts)."""
    path = tmp_path / "store"
    monkeypatch.setenv("HITHER_STORE_URL", str(path))
    set_default_store(None)
    yield path
    set_default_store(None)


def write(path, text):
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)


# ----------------------------------------------------------------- made at creation
def test_file_content_is_stored_when_made(tmp_path, store_dir):
    src = write(tmp_path / "data.txt", "first")
    f = hi.File(src)
    assert f.uri == f"sha1://{hashlib.sha1(b'first').hexdigest()}/data.txt"
    assert f.path == src and f.name == "data.txt"
    stored = f.resolve()
    assert stored != src and stored.startswith(str(store_dir))  # the stored copy
    assert not os.path.samefile(stored, src)  # a copy or a clone, never a hard link
    assert os.stat(stored).st_mode & 0o222 == 0  # read-only
    assert os.fspath(f) == stored and f.read_text() == "first"


def test_editing_the_source_in_place_never_reaches_the_file(tmp_path):
    src = write(tmp_path / "data.txt", "first")
    f = hi.File(src)
    with open(src, "r+") as fh:  # same size, same inode: what a hard link would share
        fh.write("FIRST")
    assert f.read_text() == "first"
    assert hi.File(src).read_text() == "FIRST" and hi.File(src).uri != f.uri


def test_file_of_a_directory_is_an_error_at_creation(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory.*one file"):
        hi.File(str(tmp_path))


def test_file_of_a_missing_path_is_an_error_at_creation(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError) as ei:
        hi.File(str(missing))
    assert str(missing) in str(ei.value) and "check the path" in str(ei.value)
    rel = "not-here.txt"
    with pytest.raises(FileNotFoundError, match="relative path is taken from the current folder"):
        hi.File(rel)


def test_file_of_a_pipe_is_an_error_at_creation(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(hi.HitherError, match="not a regular file"):
        hi.File(str(fifo))


def test_file_of_a_file_is_the_same_file(tmp_path):
    f = hi.File(write(tmp_path / "a.txt", "x"))
    g = hi.File(f)
    assert g == f and g.path == f.path and g.resolve() == f.resolve()


def test_same_file_made_twice_is_stored_once(tmp_path, store_dir):
    src = write(tmp_path / "a.txt", "twice")
    assert hi.File(src).resolve() == hi.File(src).resolve()
    blobs = [n for _d, _s, names in os.walk(store_dir / "sha1") for n in names]
    assert len(blobs) == 1


def test_stored_content_gone_falls_back_to_an_unchanged_source_else_a_clear_error(tmp_path):
    src = write(tmp_path / "a.txt", "keep me")
    f = hi.File(src)
    os.chmod(f.resolve(), stat.S_IWUSR | stat.S_IRUSR)
    os.remove(f.resolve())  # e.g. pruned
    g = pickle.loads(pickle.dumps(f))
    assert g.resolve() == src and g.read_text() == "keep me"  # the source still holds it
    write(src, "changed")
    h = pickle.loads(pickle.dumps(f))
    with pytest.raises(FileNotFoundError, match="a.txt"):
        h.resolve()


def test_clone_or_copy_makes_an_independent_file(tmp_path):
    src = write(tmp_path / "src.bin", "original")
    dest = str(tmp_path / "sub" / "dest.bin")
    clone_or_copy(src, dest)
    assert not os.path.samefile(src, dest)
    write(dest, "edited copy")
    assert open(src).read() == "original"


def test_builtin_content_folder(tmp_path):
    folder = ContentFolder(str(tmp_path / "folder"))
    src = write(tmp_path / "a.csv", "a,b\n")
    uri = folder.put_file(src)
    assert uri == f"sha1://{hashlib.sha1(b'a,b' + bytes([10])).hexdigest()}/a.csv"
    assert folder.exists(uri) and open(folder.get_path(uri)).read() == "a,b\n"
    assert folder.put_file(src, name="b.csv").endswith("/b.csv")
    assert os.listdir(folder.tmp_dir) == []  # nothing left half-written
    with pytest.raises(FileNotFoundError, match="holds no content"):
        folder.get_path("sha1://" + "0" * 40 + "/x")


def test_file_store_is_a_local_folder_at_the_store_url(store_dir):
    store = file_store()
    assert getattr(store, "is_local", False)
    assert builtin_folder().root == str(store_dir)


# ----------------------------------------------------------------- on every handler
def test_file_returned_from_a_temporary_directory(handler):
    direct = ff.ff_write_in_tempdir(text="direct call")
    assert direct.read_text() == "direct call" and not os.path.exists(direct.path)
    with hi.Config(job_handler=handler):
        f = ff.ff_write_in_tempdir.run(text="from a job").wait(60)
    assert isinstance(f, hi.File)
    assert not os.path.exists(f.path)  # the job's temporary folder is gone...
    assert f.read_text() == "from a job"  # ...its content is not
    assert f.uri == f"sha1://{hashlib.sha1(b'from a job').hexdigest()}/out.txt"


def test_file_result_feeds_a_downstream_job(handler):
    with hi.Config(job_handler=handler):
        made = ff.ff_write_in_tempdir.run(text="piped through")
        assert ff.ff_read.run(path=made).wait(60) == "piped through"


def test_file_edited_and_deleted_after_creation(handler, tmp_path):
    src = write(tmp_path / "in.txt", "at creation")
    f = hi.File(src)
    write(src, "edited later")
    with hi.Config(job_handler=handler):
        assert ff.ff_read.run(path=f).wait(60) == "at creation"
        os.remove(src)
        assert ff.ff_read_again.run(path=f).wait(60) == "at creation"
        assert ff.ff_identity.run(f=f).wait(60)[3] == "at creation"


def test_pickled_file_keeps_its_identity_in_a_worker(make_pjh, tmp_path):
    src = write(tmp_path / "in.txt", "who am I")
    f = hi.File(src)
    g = pickle.loads(pickle.dumps(f))
    assert (g.uri, g.path, g.resolve()) == (f.uri, f.path, f.resolve()) and g == f
    write(src, "edited before the job runs")
    with hi.Config(job_handler=make_pjh(1)):
        kind, uri, path, text, pid = ff.ff_identity.run(f=f).wait(60)
    assert pid != os.getpid()
    assert (kind, uri, path, text) == ("File", f.uri, src, "who am I")


@pytest.mark.parametrize("handler_kind", ["default", "parallel"])
def test_file_returned_from_a_temporary_directory_in_a_container_job(handler_kind, make_pjh, monkeypatch,
                                                                      tmp_path):
    """The job-directory path (the host-Python container runner): the runner copies the
    returned File into the job directory, the reading side puts it into the store."""
    from hither.plugins import registry
    from hither.testing.container_conformance import HostPythonRunner

    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "jobs"))
    registry.register("container_runners", "hostpython", HostPythonRunner)
    try:
        jh = hi.DefaultJobHandler() if handler_kind == "default" else make_pjh(1)
        with hi.Config(job_handler=jh, container=True):
            out = ff.ff_write_in_tempdir_box.run(text="from the box").wait(120)
            assert ff.ff_read.run(path=out["file"]).wait(60) == "from the box"
    finally:
        registry.unregister("container_runners", "hostpython")
    assert out["pid"] != os.getpid()
    f = out["file"]
    assert f.read_text() == "from the box" and f.resolve().startswith(str(tmp_path / "store"))
    assert os.listdir(tmp_path / "jobs") == []


STAND_IN_SCRIPT = """
import os
import hither as hi

def make(text):
    with hi.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'out.txt')
        with open(path, 'w') as fh:
            fh.write(text)
        f = hi.File(path)
        with open(path, 'w') as fh:
            fh.write('edited after hi.File')
    return {'file': f, 'stand_in': bool(getattr(hi, '__hither_stand_in__', False))}
"""


def test_file_returned_from_a_temporary_directory_in_an_image_without_hither(tmp_path, store_dir):
    """The runner's stand-in hi.File (an image without hither) keeps the content when the
    File is made, as hi.File does; the reading side puts it into the store."""
    import json
    import subprocess
    import sys
    import zipfile

    from hither.outside.jobdir import read_job_outputs
    from hither.runtime import write_runner

    job_dir = tmp_path / "job"
    (job_dir / "arrays").mkdir(parents=True)
    spec = {"job_id": "j-1", "job_hash": "0" * 40, "function_name": "make", "function_version": "0.1.0",
            "module": "__main__", "qualname": "make", "module_relpath": "script.py",
            "code_hash": "c" * 40, "sys_paths": [""], "no_resolve_input_files": False}
    (job_dir / "spec.json").write_text(json.dumps(spec))
    (job_dir / "args.json").write_text(json.dumps({"text": "made in the box"}))
    with zipfile.ZipFile(job_dir / "code.zip", "w") as z:
        z.writestr("script.py", STAND_IN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HITHER_TEMP_DIR"] = str(tmp_path / "box-tmp")
    os.makedirs(env["HITHER_TEMP_DIR"])
    # -I -S: neither hither nor site-packages, as in a bare image
    write_runner(str(tmp_path / "runner.py"))
    proc = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "runner.py"), str(job_dir)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    assert os.listdir(env["HITHER_TEMP_DIR"]) == []  # the job's temporary folder is gone
    outcome = read_job_outputs(str(job_dir))
    assert outcome.error is None, outcome.error
    assert outcome.value["stand_in"] is True
    f = outcome.value["file"]
    assert f.read_text() == "made in the box"
    assert f.uri == f"sha1://{hashlib.sha1(b'made in the box').hexdigest()}/out.txt"
    assert f.resolve().startswith(str(store_dir))


@pytest.mark.timeout(120)
def test_worker_survives_a_result_whose_check_raises(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        pid = ff.ff_pid.run().wait(60)
        with pytest.raises(Exception) as ei:
            ff.ff_bad_result.run().wait(60)
        assert not isinstance(ei.value, WorkerDiedError), ei.value
        assert "cannot look at me" in str(ei.value)
        assert ff.ff_pid.run().wait(60) == pid  # the same worker goes on


# ----------------------------------------------------------------- encodings (hypothesis)
_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,30}", fullmatch=True).filter(
    lambda n: n not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), name=_names)
def test_file_round_trips_through_pickle_and_serialization(tmp_path_factory, data, name):
    d = tmp_path_factory.mktemp("rt")
    src = d / name
    src.write_bytes(data)
    f = hi.File(str(src))
    assert f.sha1 == hashlib.sha1(data).hexdigest() and f.name == name
    os.remove(src)
    for g in (pickle.loads(pickle.dumps(f)),
              serialization.decode(serialization.encode({"f": [f]}, lambda a: None), lambda r: None)["f"][0]):
        assert g == f and hash(g) == hash(f) and g.path == f.path
        with open(g, "rb") as fh:
            assert fh.read() == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), name=_names)
def test_content_folder_round_trip(tmp_path_factory, data, name):
    folder = ContentFolder(str(tmp_path_factory.mktemp("cf")))
    src = tmp_path_factory.mktemp("src") / name
    src.write_bytes(data)
    uri = folder.put_file(str(src))
    assert uri == f"sha1://{hashlib.sha1(data).hexdigest()}/{name}"
    with open(folder.get_path(uri), "rb") as fh:
        assert fh.read() == data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), name=_names)
def test_job_directory_file_encoding_round_trip(tmp_path_factory, data, name):
    """A returned File as the runner writes it into a job directory, read back by
    ``hither.outside.jobdir.returned_file``: same identity and content, now in the store."""
    from hither.runtime import decode_value, encode_value
    from hither.runtime.jobdir import returned_file_encoder
    from hither.outside.jobdir import returned_file

    job_dir = str(tmp_path_factory.mktemp("job"))
    src = tmp_path_factory.mktemp("made") / name
    src.write_bytes(data)
    f = hi.File(str(src))
    node = encode_value([f], None, returned_file_encoder(job_dir))[0]
    back = decode_value([node], None, lambda n: returned_file(job_dir, n))[0]
    assert back == f and back.uri == f.uri
    with open(back, "rb") as fh:
        assert fh.read() == data
    assert back.resolve() == f.resolve()  # the same stored copy
