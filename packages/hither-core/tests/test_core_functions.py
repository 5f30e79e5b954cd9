"""@hi.function, calling and running functions, the FAQ examples, allowed values, files."""
import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import hither as hi
import hither.values.grammar
import core_funcs as cf

# ``hither.function`` is the decorator (the package re-exports it); the module is this:
hfunc = importlib.import_module('hither.function')
from core_funcs import add, get_the_answer, identity, kinds, ones, sqr_with_delay


# ----------------------------------------------------------------- decoration
def test_name_must_match_function_name():
    with pytest.raises(hi.errors.FunctionDefinitionError) as ei:
        # THIS IS INCORRECT AND WILL CAUSE AN ERROR (the FAQ's example)
        @hi.function('MySpecialFunction', '0.1.0')
        def boring_function():
            return 6
    msg = str(ei.value)
    assert "MySpecialFunction" in msg and "boring_function" in msg
    assert isinstance(ei.value, hi.HitherError)
    with pytest.raises(hi.errors.UnknownFunctionError):
        hi.run('MySpecialFunction')


@pytest.mark.parametrize("name,version", [("", "0.1.0"), (None, "0.1.0"), ("f", ""), ("f", 1)])
def test_function_needs_name_and_version_strings(name, version):
    with pytest.raises(hi.errors.FunctionDefinitionError):
        hi.function(name, version)


def _import_by_path(path, modname):
    spec = importlib.util.spec_from_file_location(modname, str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_same_name_in_two_files_warns_naming_both(tmp_path):
    src = textwrap.dedent("""
        import hither as hi

        @hi.function('core_dup_name_fn', '0.1.0')
        def core_dup_name_fn():
            return {which!r}
    """)
    a, b = tmp_path / "dup_a.py", tmp_path / "dup_b.py"
    a.write_text(src.format(which="a"))
    b.write_text(src.format(which="b"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first registration must not warn
        _import_by_path(a, "core_dup_a")
    with pytest.warns(UserWarning) as rec:
        _import_by_path(b, "core_dup_b")
    msgs = [str(w.message) for w in rec if "core_dup_name_fn" in str(w.message)]
    assert msgs, [str(w.message) for w in rec]
    assert str(a) in msgs[0] and str(b) in msgs[0]
    assert hi.run('core_dup_name_fn').wait() == "b"


def test_reregistering_from_the_same_file_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            @hi.function('core_same_file_fn', '0.1.0')
            def core_same_file_fn():
                return 1
    assert hi.run('core_same_file_fn').wait() == 1


def test_decorator_order_and_container_attribute():
    @hi.container('docker://python:3.11')
    @hi.function('core_outer_container', '0.1.0')
    def core_outer_container():
        return 1

    assert core_outer_container.container == 'docker://python:3.11'
    assert cf.mult.container == 'docker://jsoules/simplescipy:latest'
    with pytest.raises(hi.errors.FunctionDefinitionError):
        hi.container('python:3.11')  # not a URL


# ----------------------------------------------------------------- calling and running
def test_faq_get_the_answer():
    x = get_the_answer()
    job = get_the_answer.run()
    y = job.wait()

    assert x == 42
    assert y == 42
    assert isinstance(job, hi.Job)
    assert job.get_status() == hi.JobStatus.FINISHED


def test_plain_call_is_synchronous_in_this_process_without_a_handler(make_pjh):
    from hither.jobs.manager import manager

    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        before = len(manager.active_jobs())
        pid = cf.pid_of()  # runs right here, not in a worker
        # a plain call does not validate arguments nor results: it is just the function
        s = identity({1, 2})
    assert pid == os.getpid()
    assert s == {1, 2}
    assert len(manager.active_jobs()) == before


def test_run_returns_a_job_and_hi_run_by_name(monkeypatch):
    # other packages' tests may register another 'add' in the same session: make sure the
    # name refers to the FAQ's add while this test runs
    monkeypatch.setitem(hfunc._registry, 'add', add)
    job = add.run(x=1, y=2)
    assert isinstance(job, hi.Job)
    assert job.wait() == 3
    assert job.function_name == 'add' and job.function_version == '0.1.0'

    x = hi.run('add', x=1, y=2).wait()
    assert x == 3
    assert hi.run('add', x=10, y=5).wait() == 15


def test_hi_run_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError) as ei:
        hi.run('core_no_such_function_xyz', x=1)
    assert isinstance(ei.value, hi.HitherError)
    assert "core_no_such_function_xyz" in str(ei.value)
    assert "registered" in str(ei.value)


def test_faq_ones_add_pipeline(make_pjh):
    jh = make_pjh(2)
    with hi.Config(job_handler=jh):
        a = ones.run(shape=(4, 3))

    b = add.run(x=a, y=a)
    # b now has a Numpy array representing a 4x3 matrix of '2' values
    r = b.wait(timeout=60)
    assert isinstance(r, np.ndarray) and r.shape == (4, 3)
    assert np.array_equal(r, np.full((4, 3), 2.0))
    assert a.handler is jh and b.handler is not jh


def _assert_same(a, b, path="x"):
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (p, q) in enumerate(zip(a, b)):
            _assert_same(p, q, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), path
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a == b, path
    else:
        assert a == b, path



ALLOWED = {
    "none": None, "t": True, "f": False, "i": -7, "big": 2 ** 80, "fl": 1.5, "s": "héllo",
    "list": [1, "a", None, [2.5]],
    "tuple": (1, (2, 3), [4, (5,)]),
    "empty": ((), [], {}),
    "dict": {"a": {"b": (1, 2)}, "c": []},
    "arr": np.arange(12, dtype=np.int16).reshape(3, 4),
    "farr": np.linspace(0, 1, 5, dtype=np.float32),
    "empty_arr": np.zeros((0, 3)),
    "npf": np.float32(2.5), "npi": np.int64(3), "npb": np.bool_(True),
}


def test_allowed_values_round_trip_with_types(handler):
    with hi.Config(job_handler=handler):
        back = identity.run(x=ALLOWED).wait(timeout=60)
        seen = kinds.run(x=ALLOWED).wait(timeout=60)
    _assert_same(ALLOWED, back)
    # inside the function too: tuples are tuples, arrays arrays, numpy scalars numpy scalars
    assert seen == cf._kind(ALLOWED)
    assert seen[1]["tuple"][0] == "tuple"
    assert seen[1]["tuple"][1][2][1][1][0] == "tuple"
    assert seen[1]["npf"] == ["numpy.float32"]


def test_tuple_stays_tuple_at_top_level(handler):
    with hi.Config(job_handler=handler):
        r = identity.run(x=(1, [2, (3,)])).wait(timeout=60)
    assert type(r) is tuple and type(r[1]) is list and type(r[1][1]) is tuple


class _Thing:
    pass


@pytest.mark.parametrize("value,path,typename", [
    ({1, 2}, "x", "set"),
    ([1, 2, {"a": {1}}], "x[2]['a']", "set"),
    ({"k": (1, _Thing())}, "x['k'][1]", "_Thing"),
    ([np.array([1, "a"], dtype=object)], "x[0]", "object"),
    (b"bytes", "x", "bytes"),
    ({"a": [1, 2, lambda: 0]}, "x['a'][2]", "function"),
    (1 + 2j, "x", "complex"),
])
def test_disallowed_argument_raises_typeerror_at_run_naming_path(handler, value, path, typename):
    from hither.jobs.manager import manager

    with hi.Config(job_handler=handler):
        with pytest.raises(TypeError) as ei:
            identity.run(x=value)
    msg = str(ei.value)
    assert path in msg, msg
    assert typename in msg, msg
    assert not [j for j in manager.active_jobs() if j.function_name == 'identity']


def test_dict_with_non_str_key_raises_naming_path_and_key():
    with pytest.raises(TypeError) as ei:
        identity.run(x={"ok": {3: "v"}})
    msg = str(ei.value)
    assert "x['ok']" in msg and "3" in msg and "int" in msg


def test_disallowed_argument_via_hi_run_and_in_second_argument():
    with pytest.raises(TypeError) as ei:
        hi.run('add', x=1, y=[{"q": object()}])
    assert "y[0]['q']" in str(ei.value) and "object" in str(ei.value)


@pytest.mark.parametrize("kind,typename", [("set", "set"), ("object", "object"),
                                           ("nested_set", "set"), ("lambda", "function"),
                                           ("generator", "generator")])
def test_bad_result_type_fails_job_with_typeerror_naming_the_result(handler, kind, typename):
    with hi.Config(job_handler=handler):
        job = cf.bad_result.run(kind=kind)
        with pytest.raises(TypeError) as ei:
            job.wait(timeout=60)
    assert job.get_status() == hi.JobStatus.ERROR
    msg = str(ei.value)
    assert "the result" in msg, msg
    assert typename in msg, msg


@pytest.mark.parametrize("kwargs,word", [({"x": 1}, "missing"), ({"x": 1, "y": 2, "z": 3}, "unexpected"),
                                         ({}, "missing")])
def test_wrong_or_missing_kwargs_raise_typeerror_at_run(kwargs, word):
    with pytest.raises(TypeError) as ei:
        add.run(**kwargs)
    assert word in str(ei.value) and "add" in str(ei.value)


def test_function_result_job_hash_is_not_allowed_as_result():
    # a function may not return a Job: the job fails with a TypeError about the result
    @hi.function('core_returns_job', '0.1.0')
    def core_returns_job():
        return get_the_answer.run()

    with pytest.raises(TypeError) as ei:
        core_returns_job.run().wait(timeout=30)
    assert "the result" in str(ei.value)


# ----------------------------------------------------------------- files
def test_file_argument_reaches_function_as_local_path(handler, tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("file content 1")
    with hi.Config(job_handler=handler):
        r = cf.read_path.run(path=hi.File(str(p))).wait(timeout=60)
        r2 = cf.read_paths.run(paths={"files": [hi.File(p), hi.File(str(p))]}).wait(timeout=60)
    assert r == ["str", "file content 1"]
    assert r2 == [["str", "file content 1"]] * 2


def test_file_argument_with_no_resolve_input_files_arrives_as_file(handler, tmp_path):
    p = tmp_path / "data2.txt"
    p.write_text("file content 2")
    assert cf.file_obj_kind.no_resolve_input_files
    with hi.Config(job_handler=handler):
        r = cf.file_obj_kind.run(f=hi.File(str(p))).wait(timeout=60)
    assert r == ["hither.values.file.File", "file content 2"]


def test_function_may_return_a_file(handler, tmp_path):
    with hi.Config(job_handler=handler):
        f = cf.make_file.run(dirname=str(tmp_path), text="made here").wait(timeout=60)
    assert isinstance(f, hi.File)
    assert f.read_text() == "made here"
    with open(os.fspath(f)) as fh:
        assert fh.read() == "made here"
    assert f.uri.startswith("sha1://") and f.uri.endswith(f.name)


def test_file_output_feeds_a_downstream_job(handler, tmp_path):
    with hi.Config(job_handler=handler):
        made = cf.make_file.run(dirname=str(tmp_path), text="piped")
        r = cf.read_path.run(path=made).wait(timeout=60)
    assert r == ["str", "piped"]


def test_file_identity_is_content():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        a, b, c = (os.path.join(d, n) for n in ("a.txt", "b.txt", "c.txt"))
        for p, t in ((a, "same"), (b, "same"), (c, "other")):
            with open(p, "w") as fh:
                fh.write(t)
        fa, fb, fc = hi.File(a), hi.File(b), hi.File(c)
        assert fa.sha1 == fb.sha1 != fc.sha1
        h = hither.values.grammar.job_hash
        assert h("f", "1", {"x": fa}) != h("f", "1", {"x": fc})
        # same content and name -> same uri -> same hash, wherever the file is
        os.makedirs(os.path.join(d, "sub"))
        a2 = os.path.join(d, "sub", "a.txt")
        with open(a2, "w") as fh:
            fh.write("same")
        assert h("f", "1", {"x": fa}) == h("f", "1", {"x": hi.File(a2)})


# ----------------------------------------------------------------- job hash
jh_ = hither.values.grammar.job_hash


def test_hash_dict_order_irrelevant():
    assert jh_("f", "1", {"a": 1, "b": {"x": 1, "y": 2}}) == jh_("f", "1", {"b": {"y": 2, "x": 1}, "a": 1})


def test_hash_distinguishes_types():
    assert jh_("f", "1", {"x": (1, 2)}) != jh_("f", "1", {"x": [1, 2]})
    assert jh_("f", "1", {"x": 1}) != jh_("f", "1", {"x": 1.0})
    assert jh_("f", "1", {"x": 1}) != jh_("f", "1", {"x": True})
    assert jh_("f", "1", {"x": "1"}) != jh_("f", "1", {"x": 1})
    assert jh_("f", "1", {"x": None}) != jh_("f", "1", {"x": "None"})
    assert jh_("f", "1", {"x": ["ab"]}) != jh_("f", "1", {"x": ["a", "b"]})
    assert jh_("f", "1", {"x": 1}) != jh_("f", "2", {"x": 1})
    assert jh_("f", "1", {"x": 1}) != jh_("g", "1", {"x": 1})
    assert jh_("f", "1", {"x": 1}) == jh_("f", "1", {"x": 1})


def test_hash_arrays_dtype_shape_and_contiguity():
    a = np.arange(24, dtype=np.int64).reshape(4, 6)
    assert jh_("f", "1", {"a": a}) == jh_("f", "1", {"a": a.copy()})
    assert jh_("f", "1", {"a": a}) != jh_("f", "1", {"a": a.astype(np.int32)})
    assert jh_("f", "1", {"a": a}) != jh_("f", "1", {"a": a.reshape(6, 4)})
    assert jh_("f", "1", {"a": a}) != jh_("f", "1", {"a": a.ravel()})
    b = a.copy()
    b[3, 5] += 1
    assert jh_("f", "1", {"a": a}) != jh_("f", "1", {"a": b})
    # non-contiguous views hash like their contiguous copies
    for view in (a[:, ::2], a.T, a[::-1], a[1:3, 1:4]):
        assert not view.flags.c_contiguous
        assert jh_("f", "1", {"a": view}) == jh_("f", "1", {"a": np.ascontiguousarray(view)})
    # non-contiguous, in several chunks
    big = np.arange(3 * 1000, dtype=np.float64).reshape(1000, 3)[:, ::2]
    old = hither.values.grammar._HASH_CHUNK
    try:
        hither.values.grammar._HASH_CHUNK = 64  # force many slabs
        assert jh_("f", "1", {"a": big}) == jh_("f", "1", {"a": np.ascontiguousarray(big)})
    finally:
        hither.values.grammar._HASH_CHUNK = old
    # numpy scalars: dtype matters
    assert jh_("f", "1", {"a": np.float32(1)}) != jh_("f", "1", {"a": np.float64(1)})
    assert jh_("f", "1", {"a": np.float64(1)}) != jh_("f", "1", {"a": 1.0})


_HASH_VALUES_SRC = ("{'a': 1, 'b': 2.5, 'c': (1, [2, 'x']), 'd': None, 'e': True, "
                    "'arr': np.arange(6, dtype=np.float32).reshape(2, 3), 'n': np.int16(7), "
                    "'u': 'ünïcode', 'nested': {'z': [], 'y': ()}}")


def test_hash_is_stable_in_a_fresh_interpreter():
    here = jh_("stable_fn", "0.1.0", eval(_HASH_VALUES_SRC, {"np": np}))
    code = ("import numpy as np, hither.values.grammar as v; "
            f"print(v.job_hash('stable_fn', '0.1.0', {_HASH_VALUES_SRC}))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout.strip()
    assert out == here


def test_job_hash_includes_defaults_and_matches_values_job_hash():
    j1 = sqr_with_delay.run(x=3)
    j2 = sqr_with_delay.run(x=3, delay=None)
    j3 = sqr_with_delay.run(x=3, delay=0.0)
    assert j1.wait() == j2.wait() == j3.wait() == 9
    assert j1.job_hash == j2.job_hash
    assert j1.job_hash != j3.job_hash
    assert j1.job_hash == jh_('sqr_with_delay', '0.1.0', {"x": 3, "delay": None})
    assert j1.job_hash != sqr_with_delay.run(x=4).job_hash


def test_job_hash_of_pipeline_uses_input_results(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        a = ones.run(shape=(2, 2))
        b = add.run(x=a, y=1)
    b.wait(timeout=60)
    direct = add.run(x=np.ones((2, 2)), y=1)
    assert b.job_hash == direct.job_hash
    assert np.array_equal(b.get_result(), direct.wait())


def test_temporary_directory(monkeypatch, tmp_path):
    with hi.TemporaryDirectory() as d:
        assert isinstance(d, str) and os.path.isdir(d)
        with open(os.path.join(d, "x"), "w") as f:
            f.write("x")
        os.makedirs(os.path.join(d, "sub", "deeper"))
    assert not os.path.exists(d)
    monkeypatch.setenv("HITHER_TEMP_DIR", str(tmp_path / "base"))
    with hi.TemporaryDirectory(remove=False) as d2:
        assert os.path.dirname(d2) == str(tmp_path / "base")
    assert os.path.isdir(d2)


def test_masked_arrays_with_different_masks_do_not_share_a_job_hash():
    """Equal job hashes must mean equal inputs (the cache returns one's result for the
    other). Masked arrays are ndarray subclasses: either reject them or hash their mask."""
    a = np.ma.array([1, 2, 3], mask=[False, False, False])
    b = np.ma.array([1, 2, 3], mask=[False, True, False])
    assert a.sum() != b.sum()
    try:
        ja, jb = cf.identity.run(x=a), cf.identity.run(x=b)
    except TypeError as exc:
        assert "x" in str(exc)
        return
    assert ja.job_hash != jb.job_hash


def test_var_keyword_arguments_are_flattened_into_job_arguments(handler):
    @hi.function('core_kw', '0.1.0')
    def core_kw(a, **opts):
        return [a, opts]

    with hi.Config(job_handler=handler):
        job = core_kw.run(a=1, b=2, c=(3,))
        assert job.wait(timeout=60) == [1, {"b": 2, "c": (3,)}]
    assert job.kwargs == {"a": 1, "b": 2, "c": (3,)}
    assert job.job_hash == jh_('core_kw', '0.1.0', {"a": 1, "b": 2, "c": (3,)})
    with pytest.raises(TypeError) as ei:
        core_kw.run(a=1, c=[{1}])
    assert "c[0]" in str(ei.value)


def test_var_positional_parameters_are_refused_at_run():
    @hi.function('core_star', '0.1.0')
    def core_star(*xs):
        return sum(xs)

    with pytest.raises(TypeError, match=r"\*xs"):
        core_star.run(1, 2)
    assert core_star(1, 2) == 3  # a plain call still works


def test_missing_file_argument_is_an_error_at_run(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError) as ei:
        cf.read_path.run(path=hi.File(str(missing)))
    assert str(missing) in str(ei.value) and "path" in str(ei.value)
    with pytest.raises(FileNotFoundError):
        cf.read_paths.run(paths={"files": [hi.File(str(missing))]})


def test_code_bundle_failure_is_remembered(tmp_path, monkeypatch):
    import hither.outside.bundle as packaging

    calls = []
    real = packaging.build_bundle

    def counting(fn):
        calls.append(fn.name)
        return real(fn)

    monkeypatch.setattr(packaging, "MAX_BUNDLE_BYTES", 1)  # every bundle is "too large"
    monkeypatch.setattr(packaging, "build_bundle", counting)
    fn = hi.function("remembered", "0.1.0")(_remembered)
    for _ in range(3):
        with pytest.raises(hi.errors.BundleTooLargeError, match="biggest files"):
            fn.code_bundle()
    assert calls == ["remembered"], "the directory walk must not be repeated after a failure"


def _remembered():
    return 1


_remembered.__name__ = "remembered"
