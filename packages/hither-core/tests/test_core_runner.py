"""The shipped runner.py (hither.runtime, stdlib-only, as one zip) run on hand-written job directories, and the
FAQ's parallel example run as a script."""
import ast
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hither.runtime import decode_value, encode_value, write_runner

_RUNNER_DIR = tempfile.TemporaryDirectory(prefix="hither-test-runner-")  # removed at exit
RUNNER = os.path.join(_RUNNER_DIR.name, "runner.py")  # the file a job directory gets
write_runner(RUNNER)
T = "_hither"


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _write_job_dir(job_dir, script, qualname, args, arrays=None, extra_spec=None, files=None):
    os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)
    spec = {"job_id": "j-1", "job_hash": "0" * 40, "function_name": qualname,
            "function_version": "0.1.0", "module": "__main__", "qualname": qualname,
            "module_relpath": "script.py", "code_hash": "c" * 40, "sys_paths": [""],
            "no_resolve_input_files": False, "handler": "test-runner"}
    spec.update(extra_spec or {})
    with open(os.path.join(job_dir, "spec.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(job_dir, "args.json"), "w") as f:
        json.dump(args, f)
    for rel, arr in (arrays or {}).items():
        np.save(os.path.join(job_dir, rel), arr, allow_pickle=False)
    for rel, text in (files or {}).items():
        p = os.path.join(job_dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    with zipfile.ZipFile(os.path.join(job_dir, "code.zip"), "w") as z:
        z.writestr("script.py", textwrap.dedent(script))


def _combine_job_dir(tmp_path, xs, text, shipped="shipped", named_path=None, **more_args):
    """tmp_path/job, a job dir of SCRIPT_PLAIN's ``combine``: ``xs`` to sum, a file by
    absolute path holding ``text`` (tmp_path/outside.txt) and one shipped in the job dir
    holding ``shipped`` (``named_path``: a path it was at, tried first); ``more_args`` too."""
    job_dir = tmp_path / "job"
    outside = tmp_path / "outside.txt"
    outside.write_text(text)
    named = {T: "file", "uri": "sha1://" + "b" * 40 + "/in.txt", "local": "files/bb/in.txt"}
    if named_path is not None:
        named["path"] = named_path
    args = {"xs": xs, "path": {T: "file", "uri": "sha1://" + "a" * 40 + "/outside.txt", "path": str(outside)},
            "named": named, **more_args}
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, "combine", args, files={"files/bb/in.txt": shipped})
    return job_dir


def _run(job_dir, cwd, flags=("-I",), env=None, timeout=60):
    return subprocess.run([sys.executable, *flags, RUNNER, str(job_dir)], cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else _clean_env())


def _read(job_dir, name):
    with open(os.path.join(job_dir, name)) as f:
        return json.load(f)


# a __main__ script: definitions plus a pipeline at top level that must never run in the runner
SCRIPT_NUMPY = """
    import sys
    import logging
    import numpy as np
    import hither as hi

    NOTE = "-kept"                      # plain assignment: kept
    log = logging.getLogger("scale-script")   # calls into imported modules only: kept
    BASE = np.full(2, 7)
    TABLE = {"k": [1, 2]}

    def helper(v):
        return v * 2

    @hi.function('scale', '0.1.0')
    @hi.container('docker://python:3.11')
    def scale(a, factor, pair, label, f32):
        print("scaling " + label)
        print("a warning", file=sys.stderr)
        return {"scaled": a * factor, "pair": pair, "label": label + NOTE,
                "doubled": helper(TABLE["k"][1]), "f32": f32 * 2, "mean": np.float64(a.mean()),
                "stand_in": bool(getattr(hi, "__hither_stand_in__", False)),
                "weird": {"_hither": "not a tag"}, "base": int(BASE.sum()), "log": log.name}

    open('SHOULD_NOT_EXIST', 'w').write('top level ran')
    RESULT = helper(3)
    jh = hi.ParallelJobHandler(num_workers=2)
    with hi.Config(job_handler=jh):
        scale.run(a=np.ones(3), factor=2, pair=(1, 2), label='x', f32=np.float32(1))
    for i in range(3):
        open('SHOULD_NOT_EXIST_LOOP', 'w').write('x')
    if __name__ == '__main__':
        open('SHOULD_NOT_EXIST_MAIN', 'w').write('x')
"""


def _assert_no_side_effects(*dirs):
    for d in dirs:
        for n in ("SHOULD_NOT_EXIST", "SHOULD_NOT_EXIST_LOOP", "SHOULD_NOT_EXIST_MAIN"):
            assert not os.path.exists(os.path.join(d, n)), f"the script's top level ran ({n} in {d})"


def test_runner_file_runs_job_dir_with_arrays(tmp_path):
    job_dir, cwd = tmp_path / "job", tmp_path / "cwd"
    cwd.mkdir()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    args = {"a": {T: "ndarray", "ref": "arrays/a.npy"}, "factor": 3,
            "pair": {T: "tuple", "items": [1, [2, {T: "tuple", "items": []}]]}, "label": "lbl",
            "f32": {T: "npscalar", "dtype": "<f4", "hex": np.float32(1.25).tobytes().hex()}}
    _write_job_dir(str(job_dir), SCRIPT_NUMPY, "scale", args, arrays={"arrays/a.npy": a})
    t0 = time.time()
    proc = _run(job_dir, cwd)
    assert proc.returncode == 0, proc.stderr
    _assert_no_side_effects(str(cwd), str(job_dir), str(job_dir / "code"))
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    res = _read(job_dir, "result.json")
    value = decode_value(res["value"], lambda ref: np.load(os.path.join(job_dir, ref)))
    assert np.array_equal(value["scaled"], a * 3) and value["scaled"].dtype == np.float32
    assert res["value"]["scaled"][T] == "ndarray"
    assert res["value"]["scaled"]["ref"].startswith("arrays/")
    assert os.path.exists(os.path.join(job_dir, res["value"]["scaled"]["ref"]))
    assert value["pair"] == (1, [2, ()]) and type(value["pair"]) is tuple
    assert value["label"] == "lbl-kept" and value["doubled"] == 4
    assert type(value["f32"]) is np.float32 and value["f32"] == np.float32(2.5)
    assert type(value["mean"]) is np.float64 and value["mean"] == a.mean()
    assert value["weird"] == {"_hither": "not a tag"}
    assert value["base"] == 14 and value["log"] == "scale-script"
    assert value["stand_in"] is False  # hither itself is importable with -I (site-packages)
    ri = _read(job_dir, "runtime.json")
    assert ri["status"] == "finished"
    assert "scaling lbl" in ri["stdout"] and "a warning" in ri["stderr"]
    assert "a warning" not in ri["stdout"]
    assert ri["pid"] != os.getpid() and ri["host"]
    assert t0 - 1 <= ri["start_time"] <= ri["end_time"] <= time.time() + 1
    assert ri["handler"] == "test-runner"
    assert "scaling lbl" in proc.stdout  # also shown on the console


SCRIPT_PLAIN = """
    import os
    import sys
    import hither as hi

    @hi.function('combine', '0.1.0')
    @hi.container('docker://python:3.11')
    @hi.additional_files(['*.txt'])
    @hi.opts(no_resolve_input_files=False)
    def combine(xs, path, named, opts=None):
        print("combining", len(xs))
        with open(path) as f:
            text = f.read()
        with open(named) as f:
            text2 = f.read()
        return {"sum": sum(xs), "text": text, "text2": text2, "opts": opts,
                "stand_in": bool(getattr(hi, "__hither_stand_in__", False)),
                "has_numpy": "numpy" in sys.modules, "inf": float("inf"),
                "hither_file": hi.File.__name__}

    @hi.function('keeps_file', '0.1.0')
    @hi.opts(no_resolve_input_files=True)
    def keeps_file(f):
        with open(os.fspath(f)) as fh:
            return [type(f).__name__, fh.read(), f.uri]

    @hi.function('fails', '0.1.0')
    def fails(n):
        raise ValueError("bad input %d" % n)

    @hi.function('returns_bad', '0.1.0')
    def returns_bad():
        return {"s": {1, 2}}

    open('SHOULD_NOT_EXIST', 'w').write('top level ran')
    with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=2)):
        combine.run(xs=[1, 2], path='x', named='y')
    if __name__ == '__main__':
        open('SHOULD_NOT_EXIST_MAIN', 'w').write('x')
"""


def test_runner_with_hither_not_importable_uses_stand_in(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    job_dir = _combine_job_dir(tmp_path, [1, 2, 3.5], "by absolute path", "shipped file",
                               named_path="/nonexistent/in.txt", opts={"a": None, "b": [True, False]})
    # -I: no PYTHONPATH, no user site; -S: no site-packages either -> neither hither nor numpy
    proc = _run(job_dir, cwd, flags=("-I", "-S"))
    assert proc.returncode == 0, proc.stderr
    _assert_no_side_effects(str(cwd), str(job_dir), str(job_dir / "code"))
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    value = decode_value(_read(job_dir, "result.json")["value"], None)
    assert value["stand_in"] is True and value["has_numpy"] is False
    assert value["sum"] == 6.5 and value["text"] == "by absolute path" and value["text2"] == "shipped file"
    assert value["opts"] == {"a": None, "b": [True, False]}
    assert value["inf"] == float("inf")
    assert value["hither_file"] == "_StandInFile"
    ri = _read(job_dir, "runtime.json")
    assert ri["status"] == "finished" and "combining 3" in ri["stdout"]


@pytest.mark.parametrize("flags,cls", [(("-I",), "File"), (("-I", "-S"), "_StandInFile")])
def test_runner_no_resolve_input_files_gives_file_object(tmp_path, flags, cls):
    job_dir = tmp_path / "job"
    uri = "sha1://" + "c" * 40 + "/in.txt"
    args = {"f": {T: "file", "uri": uri, "path": None, "local": "files/cc/in.txt"}}
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, "keeps_file", args, files={"files/cc/in.txt": "kept"},
                   extra_spec={"no_resolve_input_files": True})
    proc = _run(job_dir, tmp_path, flags=flags)
    assert proc.returncode == 0, proc.stderr
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    name, text, _uri = _read(job_dir, "result.json")["value"]
    assert name == cls and text == "kept"


def test_runner_hither_really_absent_check():
    # the premise of the test above: with -I -S this Python cannot import hither nor numpy
    code = "import importlib.util as u; print(u.find_spec('hither') is None, u.find_spec('numpy') is None)"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         env=_clean_env(), timeout=30).stdout.split()
    assert out == ["True", "True"]
    # whereas -I alone keeps site-packages (hither installed there stays importable)
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         env=_clean_env(), timeout=30).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("flags", [("-I",), ("-I", "-S")])
def test_runner_function_error_writes_error_json(tmp_path, flags):
    job_dir = tmp_path / "job"
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, "fails", {"n": 7})
    proc = _run(job_dir, tmp_path, flags=flags)
    assert proc.returncode == 0, proc.stderr
    assert not (job_dir / "result.json").exists()
    err = _read(job_dir, "error.json")
    assert err["type_module"] == "builtins" and err["type_name"] == "ValueError"
    assert err["message"] == "bad input 7" and err["args_json"] == ["bad input 7"]
    assert 'raise ValueError("bad input %d" % n)' in err["traceback"]
    assert "in fails" in err["traceback"]
    assert _read(job_dir, "runtime.json")["status"] == "error"
    _assert_no_side_effects(str(tmp_path), str(job_dir))


SCRIPT_CHATTY = """
import os, subprocess, sys, time

def chatty(go):
    print("before")
    print("to stderr", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
    while not os.path.exists(go):
        time.sleep(0.02)
    print("after")
    return 1
"""


def test_runner_writes_the_console_to_the_file_the_spec_names_while_it_runs(tmp_path):
    job_dir = tmp_path / "job"
    go = tmp_path / "go"
    _write_job_dir(str(job_dir), SCRIPT_CHATTY, "chatty", {"go": str(go)},
                   extra_spec={"extra": {"console_file": "console.log"}})
    proc = subprocess.Popen([sys.executable, "-I", RUNNER, str(job_dir)], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env())
    try:
        console = job_dir / "console.log"
        deadline = time.monotonic() + 30
        while "from a child" not in (console.read_text() if console.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        text = console.read_text()  # line by line, while the job still runs
        assert "before\n" in text and "to stderr\n" in text and "after" not in text
        go.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == b"" and err == b""   # all of it went to the file
    assert console.read_text().endswith("after\n")
    ri = _read(job_dir, "runtime.json")   # the runtime info still has the function's output
    assert ri["stdout"] == "before\nafter\n" and ri["stderr"] == "to stderr\n"


@pytest.mark.parametrize("function,field,value,in_message", [
    ("returns_bad", "type_name", "TypeError", "set"),  # a result the runner cannot encode
    ("no_such_function", "stage", "load", "no_such_function"),  # a function the script lacks
])
def test_runner_reports_a_job_that_cannot_run_in_error_json(tmp_path, function, field, value, in_message):
    """The runner itself succeeds (exit 0): the job's error is in error.json and runtime.json."""
    job_dir = tmp_path / "job"
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, function, {})
    proc = _run(job_dir, tmp_path, flags=("-I", "-S"))
    assert proc.returncode == 0, proc.stderr
    err = _read(job_dir, "error.json")
    assert err.get(field) == value and in_message in err["message"], err
    assert _read(job_dir, "runtime.json")["status"] == "error"


def test_runner_unusable_job_dir_exit_code_3(tmp_path):
    proc = _run(tmp_path / "nothing_here", tmp_path)
    assert proc.returncode == 3
    assert "not a usable job directory" in proc.stderr
    proc = subprocess.run([sys.executable, "-I", RUNNER], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_runner_as_module_with_isolated_flag(tmp_path):
    # python -I -m hither.runtime works where hither is installed in site-packages
    job_dir = tmp_path / "job"
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, "fails", {"n": 1})
    proc = subprocess.run([sys.executable, "-I", "-m", "hither.runtime", str(job_dir)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert _read(job_dir, "error.json")["message"] == "bad input 1"


def test_runner_importable_module_function(tmp_path):
    # spec.module names an importable module of the bundle (not __main__)
    job_dir = tmp_path / "job"
    os.makedirs(job_dir / "arrays")
    spec = {"module": "mymod", "qualname": "Holder.triple", "module_relpath": "mymod.py",
            "sys_paths": [""], "handler": "t"}
    (job_dir / "spec.json").write_text(json.dumps(spec))
    (job_dir / "args.json").write_text(json.dumps({"x": 5}))
    with zipfile.ZipFile(job_dir / "code.zip", "w") as z:
        z.writestr("mymod.py", "class Holder:\n    @staticmethod\n    def triple(x):\n        return x * 3\n")
    proc = _run(job_dir, tmp_path, flags=("-I", "-S"))
    assert proc.returncode == 0, proc.stderr
    assert _read(job_dir, "result.json")["value"] == 15


RUNTIME_DIR = os.path.dirname(os.path.abspath(encode_value.__code__.co_filename))
RUNTIME_MODULES = sorted(n for n in os.listdir(RUNTIME_DIR) if n.endswith(".py"))


def _imports(tree):
    """(level, top-level name or None, at module level?) of every import in ``tree``."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name.split(".")[0], id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield node.level, (node.module or "").split(".")[0] or None, id(node) in top


@pytest.mark.parametrize("name", RUNTIME_MODULES)
def test_runtime_modules_are_python38_and_stdlib_only(name):
    # every module of hither/runtime ships in runner.py: Python 3.8 syntax, the stdlib and its
    # sibling modules only (numpy inside functions, where arrays are), and never hither
    with open(os.path.join(RUNTIME_DIR, name)) as f:
        tree = ast.parse(f.read(), feature_version=(3, 8))
    found = list(_imports(tree))
    for level, mod, at_top in found:
        assert mod != "hither", f"{name} imports hither"
        if level:
            assert level == 1, f"{name}: a relative import outside hither/runtime"
            continue
        if at_top:
            assert mod == "__future__" or mod in sys.stdlib_module_names, f"{name} imports {mod} at top level"
        else:
            assert mod in sys.stdlib_module_names or mod == "numpy", f"{name} imports {mod}"
    assert found or name == "__init__.py"


def test_runner_imports_in_bare_interpreter():
    proc = subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import runpy; runpy.run_path({RUNNER!r}, run_name='x'); print('ok')"],
                          capture_output=True, text=True, timeout=30, env=_clean_env())
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def _sources(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist() if not i.filename.endswith(".pyc")}


def test_shipped_runner_is_a_zip_with_the_same_sources_every_time():
    """One process ships the same bytes to every job directory; builds hold the same
    sources (the .pyc entries may differ between builds: marshal marks an object shared by
    its reference count, which depends on what else the process holds)."""
    from hither.runtime.shipping import PACKAGE, build_runner, runner_bytes

    data = runner_bytes()
    assert data is runner_bytes()
    assert _sources(build_runner()) == _sources(data)
    with open(RUNNER, "rb") as f:
        assert _sources(f.read()) == _sources(data)
    with zipfile.ZipFile(RUNNER) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names[:2] == ["__main__.py", "__main__.pyc"] and names[2:] == sorted(names[2:])
    shipped = {n for n in RUNTIME_MODULES if n not in ("__init__.py", "shipping.py")} | {"__init__.py"}
    assert {n[len(PACKAGE) + 1:] for n in names[2:]} == shipped | {n + "c" for n in shipped}
    assert not any(n.startswith("hither/") for n in names)  # inside an image hither is hither
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}


def test_the_runner_runs_its_own_bytecode_not_a_compile_of_its_source():
    # zipimport never writes bytecode: without the shipped .pyc files every run of runner.py
    # compiled the runtime again (issue 21: most of a container job's own start-up)
    import importlib.util

    with zipfile.ZipFile(RUNNER) as z:
        pyc = z.read("_hither_runtime/run.pyc")
        source = z.read("_hither_runtime/run.py")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, unchecked: no timestamps
    assert pyc[8:16] == importlib.util.source_hash(source)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import _hither_runtime.run as r, "
             "_hither_runtime.wire as w; print(r.__file__, w.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", probe, RUNNER], capture_output=True, text=True,
                         timeout=60, env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert [os.path.basename(f) for f in out.stdout.split()] == ["run.pyc", "wire.pyc"]


def test_the_runner_loads_no_module_a_plain_job_does_not_need():
    # every module the runner imports is paid again by every one-shot container job:
    # socket (for the host name), hashlib (for returned files) and ast (for a script's
    # definitions) are loaded where they are used
    import socket

    probe = ("import sys, json; sys.path.insert(0, sys.argv[1]); import _hither_runtime.run, "
             "_hither_runtime.calling as c; print(json.dumps([c.HOST, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe, RUNNER], capture_output=True, text=True,
                         timeout=60, env=_clean_env())
    assert out.returncode == 0, out.stderr
    host, modules = json.loads(out.stdout)
    assert host == socket.gethostname()
    assert not {"socket", "hashlib", "_hashlib", "ast"} & set(modules)


def test_a_python_of_another_version_compiles_the_shipped_source(tmp_path):
    # the .pyc files are this Python's: another version sees a wrong magic number, and
    # zipimport falls back to the source next to them (simulated: the magic spoiled)
    import importlib.util

    spoiled = tmp_path / "runner.py"
    with zipfile.ZipFile(RUNNER) as zin, zipfile.ZipFile(spoiled, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".pyc"):
                data = bytes([importlib.util.MAGIC_NUMBER[0] ^ 0xFF]) + data[1:]
            zout.writestr(info, data)
    job_dir = _combine_job_dir(tmp_path, [1, 2], "other python")
    proc = subprocess.run([sys.executable, "-I", "-S", "-v", str(spoiled), str(job_dir)], capture_output=True,
                          text=True, timeout=60, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert "bad magic number in '_hither_runtime.run'" in proc.stderr, proc.stderr[-3000:]  # zipimport -v
    value = _read(job_dir, "result.json")["value"]
    assert value["sum"] == 3 and value["text"] == "other python" and value["text2"] == "shipped"


def _oldest_python():
    """The oldest Python >= 3.8 on PATH as ``python3.8`` or under ~/.pyenv/versions (None if
    there is none)."""
    import glob
    import shutil

    found = []
    on_path = shutil.which("python3.8")
    for exe in ([on_path] if on_path else []) + glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python3")):
        try:
            out = subprocess.run([exe, "-I", "-S", "-c", "import sys; print(*sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30, env=_clean_env()).stdout
            version = tuple(int(x) for x in out.split())
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
        if version >= (3, 8):
            found.append((version, exe))
    return min(found)[1] if found else None


def test_shipped_runner_runs_a_job_dir_under_the_oldest_python(tmp_path):
    """The runner promises Python 3.8 and later (images with an old Python): the oldest there
    is runs a job dir (files by path and shipped), prints its usage, and leaves nothing behind."""
    exe = _oldest_python()
    if exe is None:
        pytest.skip("no Python >= 3.8 as python3.8 on PATH or under ~/.pyenv/versions")
    job_dir = _combine_job_dir(tmp_path, [4, 5], "old python")
    proc = subprocess.run([exe, "-I", "-S", RUNNER, str(job_dir)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=60, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    value = _read(job_dir, "result.json")["value"]
    assert value["sum"] == 9 and value["text"] == "old python" and value["text2"] == "shipped"
    assert value["stand_in"] is True
    usage = subprocess.run([exe, "-I", "-S", RUNNER], capture_output=True, text=True, timeout=60, env=_clean_env())
    assert usage.returncode == 2 and "usage" in usage.stderr
    _assert_no_side_effects(str(tmp_path), str(job_dir))


def test_python_m_hither_runner_still_runs_a_job_dir(tmp_path):
    # documented for users: python -m hither.runner JOB_DIR (the compat module)
    job_dir = tmp_path / "job"
    _write_job_dir(str(job_dir), SCRIPT_PLAIN, "fails", {"n": 2})
    proc = subprocess.run([sys.executable, "-m", "hither.runner", str(job_dir)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert _read(job_dir, "error.json")["message"] == "bad input 2"


def test_an_error_description_naming_hither_runner_rebuilds_as_job_exit_error():
    import hither as hi
    from hither.values.outcome import rebuild_error

    assert hi.JobExitError.__module__ == "hither.runner"
    info = {"type_module": "hither.runner", "type_name": "JobExitError", "message": "the job's function raised SystemExit(3)",
            "args_json": ["the job's function raised SystemExit(3)", "SystemExit"], "traceback": "tb"}
    exc = rebuild_error(info)
    assert type(exc) is hi.JobExitError and exc.exit_type == "SystemExit"


def test_wire_format_round_trip():
    arrays = []

    def sink(a):
        arrays.append(a)
        return len(arrays) - 1

    v = {"t": (1, (2,), []), "l": [None, True, 1.5, float("nan"), float("-inf")], "s": "x",
         "a": np.arange(4), "g": np.int8(-3), "d": {"_hither": 1, "x": (3,)}}
    enc = encode_value(v, sink)
    json.dumps(enc)  # JSON-able
    back = decode_value(json.loads(json.dumps(enc)), lambda r: arrays[r])
    assert back["t"] == (1, (2,), []) and type(back["t"][1]) is tuple
    assert back["l"][:3] == [None, True, 1.5] and np.isnan(back["l"][3]) and back["l"][4] == float("-inf")
    assert np.array_equal(back["a"], v["a"]) and type(back["g"]) is np.int8 and back["g"] == -3
    assert back["d"] == {"_hither": 1, "x": (3,)}
    with pytest.raises(TypeError):
        encode_value({1, 2}, sink)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(old=_json_values, new=_json_values, fsync=st.booleans())
def test_write_json_atomic_round_trips_and_replaces(tmp_path_factory, old, new, fsync):
    from hither.outside.jobdir import write_json_atomic  # the public name of runner.write_json_atomic

    d = tmp_path_factory.mktemp("atomic")
    path = str(d / "error.json")
    write_json_atomic(path, old, fsync=fsync)
    write_json_atomic(path, new, fsync=fsync)
    with open(path) as f:
        assert json.load(f) == new
    assert os.listdir(d) == ["error.json"]  # no temporary file left


def test_write_json_atomic_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    from hither.outside.jobdir import write_json_atomic

    path = str(tmp_path / "runtime.json")
    write_json_atomic(path, {"status": "finished"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"status": object()})  # fails half-way through json.dump
    with open(path) as f:
        assert json.load(f) == {"status": "finished"}
    assert os.listdir(tmp_path) == ["runtime.json"]
