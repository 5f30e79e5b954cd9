"""``bind_arguments``: the fast path for keyword calls gives what ``Signature.bind`` gives."""
from __future__ import annotations

from typing import Any

import pytest

import hither as hi
from hither.jobs import manager as M


def _kw_only(a, *, b=2, c=None):  # noqa: ANN001, ANN202 - a plain user function
    return a


def _with_kwargs(a, b=1, **rest):  # noqa: ANN001, ANN202, ANN003
    return a


def _pos_only(a, /, b=1):  # noqa: ANN001, ANN202
    return a


kw_only = hi.function("_kw_only", "0.1.0")(_kw_only)
with_kwargs = hi.function("_with_kwargs", "0.1.0")(_with_kwargs)
pos_only = hi.function("_pos_only", "0.1.0")(_pos_only)


@pytest.mark.parametrize("fn,kwargs", [
    (kw_only, {"a": 1}),
    (kw_only, {"c": [1, 2], "a": 1}),          # call order differs from the signature's
    (kw_only, {"a": 1, "b": 5, "c": None}),
    (with_kwargs, {"a": 1, "z": 3}),           # **rest: the slow path
])
def test_fast_path_binds_as_signature_bind(fn: Any, kwargs: dict) -> None:
    fast, deps = M.bind_arguments(fn, (), kwargs)
    # what Signature.bind gives (in the signature's order), then the defaults not given
    slow = M._bind_slow(fn, (), kwargs)
    for name, default in M._binding(fn).defaults:
        slow.setdefault(name, default)
    assert fast == slow and list(fast) == list(slow) and deps == []


def test_default_values_join_the_arguments_so_hashes_agree() -> None:
    assert kw_only.run(a=1).job_hash == kw_only.run(a=1, b=2, c=None).job_hash


@pytest.mark.parametrize("fn,args,kwargs,match", [
    (kw_only, (), {}, "missing a required argument: 'a'"),
    (kw_only, (), {"a": 1, "zz": 2}, "unexpected keyword argument 'zz'"),
    (pos_only, (), {"a": 1}, "positional"),
    (pos_only, (1,), {}, "positional-only parameters are not supported"),
])
def test_calls_the_fast_path_cannot_take_get_the_same_errors(fn: Any, args: tuple, kwargs: dict,
                                                              match: str) -> None:
    with pytest.raises(TypeError, match=match):
        M.bind_arguments(fn, args, kwargs)
