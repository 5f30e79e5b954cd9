"""Code identity (issue 19): every handler runs the code and globals the caller has at
``.run()``, the cache never serves another body's result silently, and redefining a
function in its own module is not a name clash."""
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings

import pytest

import hither as hi
from hither.code_identity import PREFIX, function_identity

#: hi.JobCache(path=...) is hither-cache's file cache (not in a hither-core-only environment)
needs_file_cache = pytest.mark.skipif(importlib.util.find_spec("hither_cache") is None,
                                      reason="needs hither-cache (the file job cache)")

HANDLERS = ["default", "parallel"]


def _run_script(tmp_path, body: str) -> dict:
    """Run ``body`` as a real ``__main__`` script; it prints one JSON line at the end."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_PRELUDE = """
import json, sys, warnings
import hither as hi

def handler(kind):
    return hi.DefaultJobHandler() if kind == "default" else hi.ParallelJobHandler(num_workers=1)
"""


@pytest.mark.parametrize("kind", HANDLERS)
def test_a_main_function_sees_changed_globals_and_helpers(tmp_path, kind):
    out = _run_script(tmp_path, _PRELUDE + f"""
SCALE = 2
OFFSET = [0]
def helper(x):
    return x + 1

@hi.function('scaled', '0.1.0')
def scaled(x):
    return helper(x) * SCALE + OFFSET[0]

jh = handler({kind!r})
got = []
with hi.Config(job_handler=jh):
    got.append(scaled.run(x=10).wait())
SCALE = 3
with hi.Config(job_handler=jh):
    got.append(scaled.run(x=10).wait())
def helper(x):
    return x + 2
with hi.Config(job_handler=jh):
    got.append(scaled.run(x=10).wait())
OFFSET[0] = 1000  # changed in place
with hi.Config(job_handler=jh):
    got.append(scaled.run(x=10).wait())
print(json.dumps(got))
""")
    assert out == [22, 33, 36, 1036]


@pytest.mark.parametrize("kind", HANDLERS)
def test_a_redefined_main_function_runs_its_new_body_without_a_rename_warning(tmp_path, kind):
    # like a notebook: each "cell" has a file of its own, run in __main__'s namespace
    (tmp_path / "cell1.py").write_text("@hi.function('body', '0.1.0')\ndef body(x):\n    return x + 1\n")
    (tmp_path / "cell2.py").write_text("@hi.function('body', '0.1.0')\ndef body(x):\n    return x + 100\n")
    out = _run_script(tmp_path, _PRELUDE + f"""
import os
warnings.simplefilter("error")  # a "registered twice" warning fails the script
def cell(name):
    path = os.path.abspath(name)
    exec(compile(open(path).read(), path, "exec"), globals())
jh = handler({kind!r})
got = []
cell("cell1.py")
with hi.Config(job_handler=jh):
    got.append(body.run(x=1).wait())
cell("cell2.py")
with hi.Config(job_handler=jh):
    got.append(body.run(x=1).wait())
    got.append(hi.run('body', x=1).wait())
print(json.dumps(got))
""")
    assert out == [2, 101, 101]


@needs_file_cache
@pytest.mark.parametrize("kind", HANDLERS)
def test_the_cache_warns_at_the_users_line_or_reruns_for_a_redefined_main_function(tmp_path, kind):
    out = _run_script(tmp_path, _PRELUDE + f"""
jh = handler({kind!r})
cache = hi.JobCache(path="jc")
@hi.function('cached', '0.1.0')
def cached(x):
    return x + 1
with hi.Config(job_handler=jh, job_cache=cache):
    first = cached.run(x=1).wait()
@hi.function('cached', '0.1.0')
def cached(x):
    return x + 100
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with hi.Config(job_handler=jh, job_cache=cache):
        stale = cached.run(x=1).wait()  # THE-USER-LINE
msgs = [(str(w.message), w.filename, w.lineno) for w in caught]
with hi.Config(job_handler=jh, job_cache=hi.JobCache(path="jc", check_code=True)):
    fresh = cached.run(x=1).wait()
lines = open(__file__).read().splitlines()
user_line = next(i + 1 for i, t in enumerate(lines) if t.endswith("# THE-USER-LINE"))
print(json.dumps([first, stale, fresh, msgs, __file__, user_line]))
""")
    first, stale, fresh, msgs, path, user_line = out
    assert (first, stale, fresh) == (2, 2, 101)
    different = [m for m in msgs if "made by different code" in m[0]]
    assert len(different) == 1, msgs
    assert different[0][1:] == [path, user_line]  # the user's line, not hither's


def _write_pkg(tmp_path, name, helper_inc=1):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / f"{name}_helper.py").write_text(f"def inc(x):\n    return x + {helper_inc}\n")
    (d / f"{name}_main.py").write_text(
        "import hither as hi\n"
        f"import {name}_helper\n\n"
        f"@hi.function('{name}_fn', '0.1.0')\n"
        f"def {name}_fn(x):\n    return {name}_helper.inc(x)\n")
    return d


def _import_fresh(d, name):
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module(f"{name}_main")
    finally:
        pass


@pytest.fixture
def pkg(tmp_path):
    name = "ci" + uuid.uuid4().hex[:8]
    d = _write_pkg(tmp_path, name)
    mod = _import_fresh(d, name)
    yield name, d, mod
    sys.path.remove(str(d))
    for m in (f"{name}_main", f"{name}_helper"):
        sys.modules.pop(m, None)


def test_an_unrelated_file_does_not_change_the_identity_but_a_used_helper_does(pkg):
    name, d, mod = pkg
    fn = getattr(mod, f"{name}_fn")
    before = function_identity(fn)
    assert before.startswith(PREFIX)
    (d / "other.py").write_text("X = 1\n")  # not imported by the function
    mod2 = importlib.reload(mod)
    assert function_identity(getattr(mod2, f"{name}_fn")) == before
    (d / f"{name}_helper.py").write_text("def inc(x):\n    return x + 5\n")
    importlib.reload(sys.modules[f"{name}_helper"])
    mod3 = importlib.reload(mod2)
    assert function_identity(getattr(mod3, f"{name}_fn")) != before


@needs_file_cache
def test_an_unrelated_file_does_not_make_the_cache_warn(pkg, tmp_path):
    name, d, mod = pkg
    cache = hi.JobCache(path=str(tmp_path / "jc"))
    with hi.Config(job_cache=cache):
        assert getattr(mod, f"{name}_fn").run(x=1).wait() == 2
    (d / "other.py").write_text("X = 1\n")
    mod2 = importlib.reload(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with hi.Config(job_cache=hi.JobCache(path=str(tmp_path / "jc"), check_code=True)):
            job = getattr(mod2, f"{name}_fn").run(x=1)
            assert job.wait() == 2 and job.from_cache


@pytest.mark.parametrize("kind", HANDLERS)
def test_workers_run_a_reloaded_module(pkg, kind, make_pjh):
    name, d, mod = pkg
    jh = hi.DefaultJobHandler() if kind == "default" else make_pjh(1)
    with hi.Config(job_handler=jh):
        assert getattr(mod, f"{name}_fn").run(x=1).wait() == 2
    src = (d / f"{name}_main.py").read_text().replace(f"return {name}_helper.inc(x)", "return x * 10")
    (d / f"{name}_main.py").write_text(src)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reloading is not a name clash
        mod2 = importlib.reload(mod)
    with hi.Config(job_handler=jh):
        assert getattr(mod2, f"{name}_fn").run(x=1).wait() == 10


def test_two_modules_claiming_one_name_still_warn(tmp_path):
    name = "cw" + uuid.uuid4().hex[:8]
    src = f"import hither as hi\n\n@hi.function('{name}', '0.1.0')\ndef {name}(x):\n    return x\n"
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{name}_{sub}.py").write_text(src)
    sys.path[:0] = [str(tmp_path / "a"), str(tmp_path / "b")]
    try:
        importlib.import_module(f"{name}_a")
        with pytest.warns(UserWarning, match="registered twice"):
            importlib.import_module(f"{name}_b")
    finally:
        del sys.path[:2]


@needs_file_cache
def test_a_source_less_function_records_an_identity_and_check_code_reruns_it(tmp_path):
    cache = str(tmp_path / "jc")
    fns = []
    for inc in (1, 2):
        ns: dict = {"hi": hi, "__name__": "__main__"}
        exec(f"@hi.function('co_exec', '0.1.0')\ndef co_exec(x):\n    return x + {inc}\n", ns)
        fns.append(ns["co_exec"])
    assert function_identity(fns[0]) != function_identity(fns[1])
    with hi.Config(job_cache=hi.JobCache(path=cache)):
        assert fns[0].run(x=10).wait() == 11
    with hi.Config(job_cache=hi.JobCache(path=cache, check_code=True)):
        assert fns[1].run(x=10).wait() == 12


def test_values_fingerprint_deterministically():
    import numpy as np

    from hither.code_identity import feed_value
    import hashlib

    def fp(v):
        h = hashlib.sha1()
        feed_value(h, v, set())
        return h.hexdigest()

    assert fp({"a": (1, 2.0, [np.arange(3)])}) == fp({"a": (1, 2.0, [np.arange(3)])})
    assert fp(np.arange(3)) != fp(np.arange(4)) != fp(np.arange(3.0))
    assert fp({3, 1, 2}) == fp({1, 2, 3})
    assert fp(1) != fp(1.0) != fp("1") != fp(True)
    assert fp(object()) == fp(object())  # repr without the address


class _Hostile:
    """A global no walk can inspect: every attribute, pickling and repr raise."""

    def __getattr__(self, name):
        raise RuntimeError("no attributes here")

    def __reduce__(self):
        raise RuntimeError("no pickling")

    def __repr__(self):
        raise RuntimeError("no repr")


@needs_file_cache
def test_a_global_that_cannot_be_fingerprinted_does_not_break_run(tmp_path):
    ns: dict = {"hi": hi, "__name__": "__main__", "THING": _Hostile()}
    exec("@hi.function('co_hostile', '0.1.0')\ndef co_hostile(x):\n    THING\n    return x\n", ns)
    fn = ns["co_hostile"]
    assert function_identity(fn) == function_identity(fn)
    with hi.Config(job_cache=hi.JobCache(path=str(tmp_path / "jc"), check_code=True)):
        assert fn.run(x=3).wait() == 3


@pytest.mark.parametrize("kind", HANDLERS)
def test_a_main_function_calling_another_hither_function_sees_it_redefined(tmp_path, kind):
    out = _run_script(tmp_path, _PRELUDE + f"""
@hi.function('inner', '0.1.0')
def inner(x):
    return x + 1

@hi.function('outer', '0.1.0')
def outer(x):
    return inner(x) * 2

jh = handler({kind!r})
got = []
with hi.Config(job_handler=jh):
    got.append(outer.run(x=1).wait())
@hi.function('inner', '0.1.0')
def inner(x):
    return x + 10
with hi.Config(job_handler=jh):
    got.append(outer.run(x=1).wait())
print(json.dumps(got))
""")
    assert out == [4, 22]


def test_a_by_value_identity_follows_globals_helpers_and_closure_cells():
    ns: dict = {"hi": hi, "__name__": "__main__"}
    exec("K = 1\nSEQ = [1]\ndef helper(x):\n    return x + K\n"
         "def make(n):\n    @hi.function('co_closure', '0.1.0')\n    def co_closure(x):\n"
         "        return helper(x) + n + SEQ[0]\n    return co_closure\n"
         "fn = make(1)\n", ns)
    fn = ns["fn"]
    seen = {function_identity(fn)}
    assert function_identity(fn) in seen  # nothing changed: the same identity
    ns["K"] = 2  # a global of a helper
    seen.add(function_identity(fn))
    exec("def helper(x):\n    return x - K\n", ns)  # the helper redefined
    seen.add(function_identity(fn))
    fn.raw.__closure__[0].cell_contents = 5  # a closure cell
    seen.add(function_identity(fn))
    ns["SEQ"][0] = 7  # a global changed in place
    seen.add(function_identity(fn))
    assert len(seen) == 5


def test_a_by_value_identity_sees_a_global_rebound_to_an_equal_value_or_bound_later():
    # the re-check at each run compares the objects read with ``is``, not ``==``
    ns: dict = {"hi": hi, "__name__": "__main__"}
    exec("K = 1\n@hi.function('co_rebound', '0.1.0')\ndef co_rebound(x):\n"
         "    return x * K + (LATER if x else 0)\n", ns)
    fn = ns["co_rebound"]
    seen = [function_identity(fn)]
    for value in (1.0, True, 1):  # == 1, but each fingerprints differently
        ns["K"] = value
        seen.append(function_identity(fn))
    ns["LATER"] = None  # a global unbound before
    seen.append(function_identity(fn))
    assert seen[0] == seen[3] and len(set(seen)) == 4, seen


@needs_file_cache
@pytest.mark.parametrize("kind", HANDLERS)
def test_a_script_read_from_stdin_has_an_identity_and_a_warning_at_its_line(tmp_path, kind):
    body = _PRELUDE + f"""
SCALE = 2
@hi.function('stdin_fn', '0.1.0')
def stdin_fn(x):
    return x * SCALE
jh = handler({kind!r})
cache = hi.JobCache(path="jc")
out = []
with hi.Config(job_handler=jh, job_cache=cache):
    out.append(stdin_fn.run(x=10).wait())
SCALE = 3
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with hi.Config(job_handler=jh, job_cache=cache):
        out.append(stdin_fn.run(x=10).wait())
with hi.Config(job_handler=jh):
    out.append(stdin_fn.run(x=10).wait())
print(json.dumps([out, [[str(w.message), w.filename] for w in caught]]))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-"], input=body, capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    out, caught = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == [20, 20, 30]
    assert [w[1] for w in caught if "made by different code" in w[0]] == ["<stdin>"]
