"""The job hash follows a value and its type exactly (property-based, with hypothesis):
equal values hash alike whatever their memory layout and in any process (whatever
PYTHONHASHSEED); values that differ in value, type, dtype, shape or nesting never share a
hash; types that cannot be hashed faithfully are refused at ``.run()``. Also: arguments
are captured at ``.run()``, and the value wire format round-trips every numpy scalar kind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hither as hi
from hither.local import transfer
from hither.runtime import decode_value, encode_value
from hither.testing.value_strategies import (Color, Count, Level, Meters, Tag, assert_exact,
                                             different_values, equal_twin, hither_values,
                                             numpy_scalars)
from hither.values.grammar import job_hash

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(v):
    return job_hash("f", "1", {"x": v})


# ------------------------------------------------------------------ equal values hit
@FAST
@given(st.data())
def test_equal_values_in_any_layout_share_a_hash(data):
    v = data.draw(hither_values())
    assert h(equal_twin(v, data)) == h(v)


_CHILD = """
import json, sys
import numpy as np
from hither.runtime import decode_value
from hither.values.grammar import job_hash
folder = sys.argv[1]
with open(folder + "/corpus.json") as f:
    vals = decode_value(json.load(f), lambda ref: np.load(folder + "/" + ref), exact=True)
print(json.dumps([job_hash("f", "1", {"x": v}) for v in vals]))
"""


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hither_values(), min_size=8, max_size=16))
def test_hashes_are_the_same_in_other_processes_and_hash_seeds(tmp_path_factory, corpus):
    # the corpus travels as hither's wire format with .npy arrays (pickle drops the byte
    # order of some dtypes, e.g. '>M8[ns]' comes back '<M8[ns]')
    folder = tmp_path_factory.mktemp("corpus")
    names = []

    def sink(a):
        names.append(f"a{len(names)}.npy")
        np.save(folder / names[-1], a, allow_pickle=False)
        return names[-1]

    (folder / "corpus.json").write_text(json.dumps(encode_value(corpus, sink)))
    here = [h(v) for v in corpus]
    for seed in ("0", "4242"):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], check=True, timeout=60,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == here, f"hashes differ with PYTHONHASHSEED={seed}"


# ------------------------------------------------------------------ different values miss
@FAST
@given(hither_values())
def test_values_that_differ_never_share_a_hash(v):
    mine = h(v)
    for other in different_values(v):
        if isinstance(v, np.floating) and type(other) is type(v) and other == v \
                and np.signbit(other) == np.signbit(v):
            continue  # a "variant" equal in value and sign (e.g. a longdouble step lost to rounding)
        assert h(other) != mine, f"{other!r} hashes like {v!r}"


@pytest.mark.parametrize("a,b", [
    (Color.RED, "Color.RED"), (Color.RED, "red"), (Color.RED, Tag("red")),
    (Level.LOW, 1), (Level.LOW, True), (True, 1), (False, 0), (Count(1), 1), (Count(1), Level.LOW),
    (np.float64(1.5), 1.5), (Meters(1.5), 1.5), (np.float32(1.5), np.float64(1.5)),
    (np.str_("a"), "a"), (np.str_(""), ""), (np.bytes_(b"a"), np.str_("a")),
    (np.int64(1), 1), (np.int64(1), np.int32(1)), (np.bool_(True), True),
    (np.longdouble(1), np.float64(1)), (np.datetime64(1, "s"), np.datetime64(1, "ms")),
    (np.datetime64(1, "s"), np.timedelta64(1, "s")), (np.datetime64(1, "s"), np.int64(1)),
    (np.zeros(2, "<i4"), np.zeros(2, ">i4")), (np.zeros(2), np.zeros((1, 2))),
    (np.zeros(0), np.zeros((0, 1))), (np.zeros(()), np.float64(0)), ([1], (1,)), ([1], [[1]]),
    ({"a": 1}, [("a", 1)]), (0.0, -0.0), (None, "N"),
    (np.zeros(2, np.dtype([("a", "u1"), ("b", "<f8")])),
     np.zeros(2, np.dtype([("a", "u1"), ("b", "<f8")], align=True))),
    (np.zeros(1, np.dtype([("a", "u1"), ("b", "u1")])), np.zeros(1, np.dtype([("b", "u1"), ("a", "u1")]))),
])
def test_type_confusions_never_share_a_hash(a, b):
    assert h(a) != h(b)


def test_str_enum_is_not_hashed_as_its_str():
    # the example of issue 8: (str, Enum) hashed as str(v) == 'Mode.FAST'
    assert str(Color.RED) == "Color.RED"
    assert h(Color.RED) != h("Color.RED") and h(Color.RED) != h(Color.GREEN)


# ------------------------------------------------------------------ padding and odd dtypes
def test_padding_bytes_do_not_change_the_hash():
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)
    a = np.zeros(4, dt)
    b = np.frombuffer(bytearray(b"\xab" * a.nbytes), dtype=dt)  # (a copy may zero padding)
    b["a"], b["b"] = 0, 0.0
    assert a.tobytes() != b.tobytes() and h(a) == h(b) and h(a[1]) == h(b[1])


@pytest.mark.skipif(np.finfo(np.longdouble).nmant != 63, reason="x87 long double only")
def test_long_double_padding_does_not_change_the_hash():
    a = np.array([1 / 3, 2.5], np.longdouble)
    b = a.copy()
    b.view(np.uint8).reshape(2, -1)[:, 10:] = 0x5A
    assert a.tobytes() != b.tobytes() and np.array_equal(a, b)
    assert h(a) == h(b) and h(a[0]) == h(b[0])
    c = a.astype(np.clongdouble)
    d = c.copy()
    d.view(np.uint8).reshape(2, -1)[:, 10:16] = 0x5A
    assert h(c) == h(d)


def test_datetime_arrays_hash_with_their_unit():
    a = np.array(["2020-01-01", "NaT"], "M8[s]")
    assert h(a) == h(a.copy()) and h(a) != h(a.astype("M8[ms]")) and h(a) != h(a.view("<i8"))
    td = np.array([1, 2], "m8[D]")
    assert h(td) != h(td.astype("m8[h]")) and h(td[::-1][::-1]) == h(td)


def test_fortran_and_strided_arrays_hash_like_c_order():
    c = np.arange(24.0).reshape(2, 3, 4)
    assert h(np.asfortranarray(c)) == h(c)
    big = np.arange(48.0).reshape(2, 3, 8)
    assert not big[:, :, ::2].flags.c_contiguous
    assert h(big[:, :, ::2]) == h(np.ascontiguousarray(big[:, :, ::2]))


def test_hash_domain_is_v2():
    import hashlib

    from hither.values.grammar import HASH_DOMAIN, update_hash

    ref = hashlib.sha1(b"hither-job-v2\0")
    for x in ("f", "1", {"x": 1}):
        update_hash(ref, x)
    assert HASH_DOMAIN == b"hither-job-v2\0" and job_hash("f", "1", {"x": 1}) == ref.hexdigest()


# ------------------------------------------------------------------ refused at .run()
@hi.function("hp_echo", "0.1.0")
def hp_echo(x):
    return x


def test_types_that_cannot_be_hashed_faithfully_are_refused_at_run():
    class Local(str):  # two such classes share module and qualname
        pass

    with pytest.raises(TypeError, match=r"x is a .*Local, a class defined inside a function"):
        hp_echo.run(x=Local("a"))

    class WithState(int):
        pass

    WithState.__qualname__ = "WithState"  # module level in name, but the instance has state
    v = WithState(3)
    v.unit = "m"
    with pytest.raises(TypeError, match=r"x\[0\] is a .*WithState whose instance carries attributes \(unit\)"):
        hp_echo.run(x=[v])

    class Slotted(float):
        __slots__ = ("unit",)

    Slotted.__qualname__ = "Slotted"
    w = Slotted(1.5)
    w.unit = "m"
    with pytest.raises(TypeError, match=r"x\['w'\] is a .*Slotted whose instance carries attributes \(unit\)"):
        hp_echo.run(x={"w": w})
    assert hp_echo.run(x=Slotted(2.5)).wait() == 2.5  # no attribute set: nothing lost


def test_enum_arguments_run_and_come_back(tmp_path):
    pytest.importorskip("hither_cache", reason="the file job cache is in hither-cache")
    with hi.Config(job_cache=hi.JobCache(path=str(tmp_path))):
        assert hp_echo.run(x=Color.RED).wait() is Color.RED
        r = hp_echo.run(x="Color.RED").wait()
        assert type(r) is str and r == "Color.RED"  # not the Enum from the first call
        got = hp_echo.run(x=Color.RED).wait()
        assert got is Color.RED


# ------------------------------------------------------------------ wire format
@FAST
@given(numpy_scalars())
@example(np.str_("a\x00"))
@example(np.bytes_(b"\x00\x00"))
def test_every_numpy_scalar_kind_round_trips_through_the_wire_format(v):
    arrays = []

    def sink(a):
        arrays.append(np.array(a, copy=True))
        return len(arrays) - 1

    data = json.loads(json.dumps(encode_value(v, sink)))
    assert_exact(decode_value(data, lambda i: arrays[i]), v)


@pytest.mark.parametrize("shm", [False, True], ids=["in-band", "shared-memory"])
@FAST
@given(v=hither_values())
@example(v=np.arange(3).astype(">M8[ns]"))
@example(v=[np.arange(6).astype(">m8[ms]").reshape(2, 3)[:, ::2], np.datetime64(5, "ns")])
@example(v=np.zeros(2, [("t", ">M8[ns]"), ("x", ">f8", (2,))]))
@example(v=[np.str_("\x00"), {"k": np.bytes_(b"a\x00")}])  # numpy's pickling drops trailing NULs
def test_values_round_trip_exactly_through_the_worker_transfer(v, shm):
    """``hither.local.transfer`` (pickle protocol 5, buffers in-band or through shared-memory
    files) gives a ParallelJobHandler worker, and brings back, exactly the value: byte order
    of datetime and timedelta arrays included (pickle alone makes them native)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transfer, "SHM_THRESHOLD", 0 if shm else 1 << 40)
        data, paths = transfer.dumps(v)
    assert bool(paths) <= shm
    try:
        got = transfer.loads(data, list(paths), unlink=True)
    finally:
        transfer.discard(paths)
    assert_exact(got, v)


def test_wire_format_keeps_structured_scalars_and_empty_strings():
    dt = np.dtype([("a", "u1"), ("b", "<f8")], align=True)
    s = np.array([(3, 2.5)], dt)[0]
    arrays = []
    got = decode_value(encode_value(s, lambda a: arrays.append(a.copy()) or 0), lambda i: arrays[i])
    assert type(got) is np.void and got.dtype == dt and got["a"] == 3 and got["b"] == 2.5
    assert decode_value(encode_value(np.str_(""), None), None) == np.str_("")


def test_wire_format_without_the_class_gives_the_plain_value_unless_exact():
    data = {"_hither": "typed", "type": "no_such_module_hp:Mode", "value": "fast"}
    assert decode_value(data, None) == "fast"
    with pytest.raises(ValueError, match="no_such_module_hp.Mode cannot be rebuilt"):
        decode_value(data, None, exact=True)


# ------------------------------------------------------------------ captured at .run()
@hi.function("hp_slow", "0.1.0")
def hp_slow():
    time.sleep(0.5)
    return 0


@hi.function("hp_use", "0.1.0")
def hp_use(x, p):
    return x + p["i"] + (int(p["a"][0]) if "a" in p else 0)


def test_arguments_are_captured_at_run(make_pjh):
    # issue 8: with ParallelJobHandler(2) this gave [2, 2, 2]
    with hi.Config(job_handler=make_pjh(2)):
        up = hp_slow.run()
        p = {}
        jobs = []
        for i in range(3):
            p["i"] = i
            jobs.append(hp_use.run(x=up, p=p))
        assert [j.wait(60) for j in jobs] == [0, 1, 2]


def test_nested_containers_and_small_arrays_are_captured_at_run(make_pjh):
    with hi.Config(job_handler=make_pjh(2)):
        up = hp_slow.run()
        a = np.zeros(3)
        p = {"i": 0, "a": a, "deep": [[1]]}
        j = hp_use.run(x=up, p=p)
        p["i"], a[0] = 5, 7.0
        p["deep"][0].append(2)
        assert j.wait(60) == 0


def test_snapshot_rules():
    from hither.values.grammar import snapshot

    a = np.zeros(4)
    assert snapshot(a) is not a and np.shares_memory(snapshot({"a": [a]})["a"][0], a) is False
    ro = np.zeros(4)
    ro.setflags(write=False)
    assert snapshot(ro) is ro  # read-only memory cannot change: never copied
    view = a[:2]
    view.setflags(write=False)  # read-only view of writeable memory: copied
    assert snapshot(view) is not view
    t = (1, [2])
    assert snapshot(t) == t and snapshot(t)[1] is not t[1]
    big = np.zeros(1)
    import hither.values.grammar as values

    old = values.SNAPSHOT_MAX_BYTES
    values.SNAPSHOT_MAX_BYTES = 4  # above the limit: passed by reference (documented)
    try:
        assert snapshot(big) is big
    finally:
        values.SNAPSHOT_MAX_BYTES = old


_ENUM_SCRIPT = '''
import enum

class Mode(str, enum.Enum):
    FAST = "fast"
    SLOW = "slow"

def which(m, other):
    return [m, type(m).__name__, isinstance(m, Mode), other, type(other).__name__]
'''


def test_runner_rebuilds_a_scripts_enum_arguments_and_results(tmp_path):
    # a job directory (containers, clusters): the function's own __main__ classes come back
    # as themselves; a class the runner cannot import arrives as its plain value
    import zipfile

    from hither.runtime import write_runner

    job_dir = tmp_path / "job"
    (job_dir / "arrays").mkdir(parents=True)
    spec = {"job_id": "j-1", "job_hash": "0" * 40, "function_name": "which",
            "function_version": "0.1.0", "module": "__main__", "qualname": "which",
            "module_relpath": "script.py", "code_hash": "c" * 40, "sys_paths": [""],
            "no_resolve_input_files": False, "handler": "test"}
    (job_dir / "spec.json").write_text(json.dumps(spec))
    args = {"m": {"_hither": "typed", "type": "__main__:Mode", "value": "slow"},
            "other": {"_hither": "typed", "type": "not_here_hp:Other", "value": 3}}
    (job_dir / "args.json").write_text(json.dumps(args))
    with zipfile.ZipFile(job_dir / "code.zip", "w") as z:
        z.writestr("script.py", _ENUM_SCRIPT)
    write_runner(str(tmp_path / "runner.py"))
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(job_dir)], capture_output=True,
                          text=True, timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (job_dir / "error.json").exists(), (job_dir / "error.json").read_text()
    value = json.loads((job_dir / "result.json").read_text())["value"]
    assert value[0] == {"_hither": "typed", "type": "__main__:Mode", "value": "slow"}
    assert value[1:] == ["Mode", True, 3, "int"]
