"""The one value grammar (``hither.runtime.grammar``): the kind of each value, the argument
path in errors, one classification reaching every walk (scan, hash, snapshot, substitute),
one Python frame per level of nesting, the wire-form walk, and job hashes pinned to the
values computed before the walks were rewritten on it (cached results are keyed by them).
"""
from __future__ import annotations

import ast
import enum
import json
import subprocess
import sys

import numpy as np
import pytest

import hither.runtime.grammar as g
from hither.runtime import encode_value
from hither.testing.value_strategies import Color, Count, Level, Meters, Tag
from hither.values.file import File
from hither.values.grammar import (MAX_DEPTH, has_files, job_hash, map_files, scan, snapshot,
                                   substitute)
from hither.values.refs import StoredResult, has_store_refs, walk_encoded


class FakeJob:
    _hither_job = True
    job_hash = "0123456789abcdef0123456789abcdef01234567"


def _corpus(tmp):
    p = tmp / "data.txt"
    p.write_bytes(b"hello hither\n")
    aligned = np.zeros(3, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True))
    aligned["a"] = [1, 2, 3]
    aligned["b"] = [0.5, -1.0, 2.0]
    return {
        "scalars": [None, True, False, 0, -7, 2 ** 80, 1.5, float("nan"), float("-inf"), "",
                    "héllo", "\udcff"],
        "nesting": {"b": (1, [2, (3,)]), "a": {"_hither": [], "z": ()}, "c": [[], {}]},
        "arrays": [np.arange(12, dtype="<i4").reshape(3, 4),
                   np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                   np.array(["ab", "c"], dtype="<U2"), np.zeros((0, 3), dtype=">f8"), aligned,
                   np.array(["2020-01-01"], dtype="<M8[D]"), np.arange(10.0)[::3]],
        "npscalars": [np.float32(1.25), np.int64(-3), np.str_("a\x00"), np.bytes_(b"xy"),
                      aligned[1], np.datetime64("2021-05-01T12:00", "m"), np.bool_(True)],
        "typed": [Color.RED, Level.HIGH, Tag("t"), Count(4), Meters(2.5)],
        "file": File(str(p)),
        "job": FakeJob(),
        "ref": StoredResult({"_hither": "tuple", "items": [
            1, {"_hither": "ndarray", "uri": "sha1://" + "a" * 40}]}, None),
    }


#: computed on main before the walks were rewritten on the grammar (commit e054bb8)
PINNED = {
    "scalars": "9bd236a428a104987733a31614d523271bba892b",
    "nesting": "d794988b8c80b823320f42575befaa5790cc245c",
    "arrays": "23d71d19e8759da04470b01da83c73884c3b11b6",
    "npscalars": "b057592c733e8ee83063b67df5ad2dbed2bd0481",
    "typed": "b8c4b417ebe9724e9ff4f8098444cc809b5c195a",
    "file": "5e4766c6dc71f2fbb2b3f8b843d28745af16cefb",
    "job": "2c91d71dd9ad93ae6894fc373c8cd0040b6269f2",
    "ref": "c7a468be38ad1dce50a8e4a34e155ff588a2d902",
}


def test_job_hashes_are_those_of_before_the_grammar(tmp_path):
    corpus = _corpus(tmp_path)
    got = {k: job_hash("f", "1", {"x": v}) for k, v in corpus.items()}
    assert got == PINNED
    assert job_hash("name", "0.1.0", corpus) == "8b03eeb4da934ff2ca923c1c0e0e989edb4bfa09"


# ------------------------------------------------------------------ kinds
class Plain:
    pass


class FileLike:  # the runner's stand-in File is recognised this way
    uri = "sha1://" + "0" * 40

    def __fspath__(self):
        return "/x"


class Proxy:  # claims to be an array, as isinstance would believe
    @property
    def __class__(self):
        return np.ndarray


class Weird:
    @property
    def __class__(self):
        raise RuntimeError("no class")


class Mode(str, enum.Enum):
    A = "a"


@pytest.mark.parametrize("value, kind", [
    (None, g.NONE), (True, g.BOOL), (3, g.INT), (2.5, g.FLOAT), ("s", g.STR), ([1], g.LIST),
    ((1,), g.TUPLE), ({"a": 1}, g.DICT), (np.zeros(2), g.NDARRAY),
    (np.ma.masked_array([1]), g.NDARRAY), (np.float32(1), g.NPSCALAR), (np.str_("a"), g.NPSCALAR),
    (np.void(b"ab"), g.NPSCALAR), (File.from_uri("sha1://" + "0" * 40), g.FILE), (FileLike(), g.FILE),
    (StoredResult([], None), g.REF), (FakeJob(), g.JOB), (Mode.A, g.TYPED), (Level.LOW, g.TYPED),
    (Count(1), g.TYPED), (Meters(1.0), g.TYPED), (Tag("x"), g.TYPED), (Plain(), g.OTHER),
    (b"bytes", g.OTHER), ({1, 2}, g.OTHER), (Proxy(), g.NDARRAY),
])
def test_each_value_has_its_kind(value, kind):
    assert g.KIND_NAMES[g.kind_of(value)] == g.KIND_NAMES[kind]
    assert g.kind_of(value) == kind  # again: from the remembered classes


def test_a_proxy_class_is_read_as_isinstance_reads_it():
    with pytest.raises(RuntimeError, match="no class"):
        g.kind_of(Weird())
    with pytest.raises(TypeError, match=r"x\[0\] is a .*Proxy, a numpy array subclass"):
        scan([Proxy()], "x")


def test_the_grammar_module_stands_alone_in_python_3_8_without_numpy():
    src = open(g.__file__, encoding="utf-8").read()
    ast.parse(src, feature_version=(3, 8))
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('gr', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "print(m.kind_of([1]) == m.LIST, m.kind_of(b'') == m.OTHER, "
            "sorted(n for n in sys.modules if n.split('.')[0] in ('hither', 'numpy')))")
    out = subprocess.run([sys.executable, "-I", "-c", code, g.__file__], capture_output=True,
                         text=True, check=True).stdout.split(None, 2)
    assert out == ["True", "True", "[]\n"]


# ------------------------------------------------------------------ paths in errors
def test_format_path():
    assert g.format_path("x") == "x"
    assert g.format_path(((("x", 2), "a"), 0)) == "x[2]['a'][0]"
    assert g.path_depth(((("x", 2), "a"), 0)) == 3


class Stateful(int):
    pass


def _stateful():
    v = Stateful(1)
    v.note = "x"
    return v


def _missing_file():
    f = File.__new__(File)
    f._path, f._uri, f._name, f._local = "/no/such/file", None, "file", None
    return f


@pytest.mark.parametrize("value, message", [
    ([1, {"a": object()}], r"^x\[1\]\['a'\] has type builtins.object, which hither cannot pass"),
    ((0, 1, {"k": {3: 1}}), r"^x\[2\]\['k'\] has a key 3 of type int"),
    ({"a": [np.zeros(2, dtype=object)]}, r"^x\['a'\]\[0\] is a numpy array of dtype object"),
    ([[np.ma.masked_array([1])]], r"^x\[0\]\[0\] is a numpy.ma.MaskedArray, a numpy array subclass"),
    ({"f": [_missing_file()]}, r"^x\['f'\]\[0\] is hi.File\('/no/such/file'\), but that file does not"),
    ({"e": (Count(1), _stateful())}, r"^x\['e'\]\[1\] is a .*Stateful whose instance carries attributes \(note\)"),
    ([FileLike()], r"^x\[0\] has type .*FileLike, which hither cannot pass"),
])
def test_errors_name_the_argument_path(value, message):
    with pytest.raises((TypeError, FileNotFoundError), match=message):
        scan(value, "x")


def test_a_job_in_a_result_and_a_cycle_name_their_path():
    with pytest.raises(TypeError, match=r"^result\[0\]\['j'\] is a hither Job"):
        scan([{"j": FakeJob()}], "result", allow_jobs=False)
    loop: list = [1]
    loop.append({"again": loop})
    with pytest.raises(TypeError, match=r"^x\[1\]\['again'\] contains itself"):
        scan(loop, "x")


# ------------------------------------------------------------------ one classification, every walk
def test_a_kind_decided_in_the_grammar_reaches_every_walk(monkeypatch):
    class Handle:  # of no kind: refused by scan and the hash, kept by the copies
        job_hash = FakeJob.job_hash

    v = {"h": [Handle()]}
    with pytest.raises(TypeError, match=r"x\['h'\]\[0\] has type"):
        scan(v, "x")
    real = g.classify
    monkeypatch.setattr(g, "classify", lambda t: g.JOB if t is Handle else real(t))
    try:
        assert scan(v, "x") == [v["h"][0]]
        assert job_hash("f", "1", v) == job_hash("f", "1", {"h": [FakeJob()]}) != job_hash("f", "1", {"h": [1]})
        assert substitute(v, lambda j: 42) == {"h": [42]}
        assert snapshot(v)["h"][0] is v["h"][0] and snapshot(v)["h"] is not v["h"]
    finally:
        g.KIND_BY_CLASS.pop(Handle, None)


def test_a_new_walk_is_one_method_per_kind_it_cares_about():
    class CountArrays(g.Visitor):
        def __init__(self):
            self.n = 0

        def visit_ndarray(self, v, path):
            self.n += 1
            return path

    c = CountArrays()
    out = c.visit({"a": [np.zeros(1), (np.zeros(2), 3)], "b": "s"}, "x")
    assert c.n == 2
    assert g.format_path(out["a"][1][0]) == "x['a'][1][0]" and out["b"] == "s"
    assert type(out["a"][1]) is tuple


def test_values_nested_to_the_limit_pass_every_walk_and_deeper_ones_are_refused():
    def nest(n, inner):
        v = inner
        for i in range(n):
            v = [v] if i % 3 else ({"k": v} if i % 3 == 1 else (v,))
        return v

    ok = nest(MAX_DEPTH, 1)
    scan(ok, "x")
    job_hash("f", "1", {"x": ok})
    assert snapshot(ok) == ok and substitute(ok, lambda j: j) == ok
    assert map_files(ok, lambda f: f) == ok and has_files(ok) is False
    with pytest.raises(TypeError, match="nested more than 500 levels deep"):
        scan(nest(MAX_DEPTH + 1, 1), "x")


# ------------------------------------------------------------------ the wire form
def test_walk_encoded_reaches_nested_nodes_and_leaves_user_dicts_alone():
    v = {"a": ({"_hither": "file", "uri": "sha1://x"}, np.zeros(2)),
         "b": [np.zeros(1, dtype=[("p", "u1")])[0]]}
    e = encode_value(v, lambda a: "R")
    seen = []
    out = walk_encoded(e, lambda node: seen.append(node) or "NODE")
    assert seen == [{"_hither": "ndarray", "ref": "R"}] * 2
    assert out["a"]["items"][1] == "NODE" and out["b"][0]["array"] == "NODE"
    assert out["a"]["items"][0] == {"_hither": "dict", "items": {"_hither": "file", "uri": "sha1://x"}}
    assert has_store_refs(e) is False  # the user's dict with a "uri" is not a stored file
    assert json.dumps(walk_encoded(e, lambda n: n)) == json.dumps(e)


def test_wire_visitor_paths_follow_the_value():
    class Paths(g.WireVisitor):
        def visit_scalar(self, d, path):
            return g.format_path(path)

    e = encode_value({"t": (1, [2]), "d": {"_hither": 3}}, None)
    out = Paths().visit(e, "x")
    assert out["t"]["items"] == ["x['t'][0]", ["x['t'][1][0]"]]
    assert out["d"]["items"]["_hither"] == "x['d']['_hither']"
