"""Property tests of what the runners parse: image URLs, Docker references (repository and
tag, with a registry port), bind specifications."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from hither.errors import ContainerError
from hither_container.docker_runner import _repo_tag
from hither_container.jobmount import describe_exit, parse_bind, split_image

name = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)*", fullmatch=True)
repo = st.builds(lambda host, parts: "/".join(([host] if host else []) + parts),
                 st.one_of(st.none(), st.builds(lambda h, p: f"{h}:{p}", name, st.integers(1, 65535))),
                 st.lists(name, min_size=1, max_size=3))
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(repo, tag)
def test_repository_and_tag_round_trip(r, t):
    assert _repo_tag(f"{r}:{t}") == (r, t)


@given(repo)
def test_no_tag_means_latest(r):
    assert _repo_tag(r) == (r, "latest")


@given(st.sampled_from(["docker", "library", "oras", "shub", "sif"]),
       st.text(min_size=1).filter(lambda s: "://" not in s))
def test_image_urls_split_into_scheme_and_reference(scheme, ref):
    assert split_image(f"{scheme}://{ref}") == (scheme, ref)


@given(repo)
def test_a_bare_reference_is_dockers(r):
    assert split_image(r) == ("docker", r)


@given(st.lists(name, min_size=1, max_size=4), st.sampled_from(["", ":ro", ":rw"]))
def test_bind_specs(tmp_path_factory_parts, mode):
    host = os.getcwd()
    inside = "/" + "/".join(tmp_path_factory_parts)
    assert parse_bind(f"{host}:{inside}{mode}") == (host, inside, mode[1:] or "rw")


@pytest.mark.parametrize("bad", ["/a", "/a:/b:rx", ":/b", "/a:rel/path", "/does/not/exist:/b"])
def test_bad_binds_say_why(bad):
    with pytest.raises(ContainerError, match="bind mount"):
        parse_bind(bad)


def test_exit_codes_name_their_signal():
    assert describe_exit(137) == "exit code 137 (SIGKILL)"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "no exit code"


def test_the_mounted_hither_is_a_compiled_copy_of_the_installed_one():
    import hither

    from hither_container.jobmount import hither_source

    src = os.path.dirname(os.path.abspath(hither.__file__))
    copy = hither_source()
    assert copy != src and os.path.basename(copy) == "hither"
    for root, dirs, names in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in names:
            if n.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, n), src)
                with open(os.path.join(src, rel), "rb") as a, open(os.path.join(copy, rel), "rb") as b:
                    assert a.read() == b.read(), rel
    assert any(n.endswith(".pyc") for n in os.listdir(os.path.join(copy, "__pycache__")))
    assert hither_source() == copy  # made once
