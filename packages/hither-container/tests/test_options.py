"""ContainerOptions checked where they are made, each mistake named by its field (not a raw
engine error at the first job), and the hardening defaults as docker-py arguments."""
from __future__ import annotations

import pytest

import hither as hi
from hither.errors import ConfigError
from hither.errors import ContainerError
from hither.models import ContainerOptions
from hither_container.docker_runner import DockerRunner
from hither_container.engine import create_kwargs


@pytest.mark.parametrize("options, field", [
    ({"memory": "abc"}, "memory"),
    ({"memory": "-5g"}, "memory"),
    ({"memory": "0"}, "memory"),
    ({"binds": ["/data:/"]}, "binds"),
    ({"binds": ["/data:/proc/x"]}, "binds"),
    ({"binds": ["/data:relative"]}, "binds"),
    ({"extra": {"pul": "never"}}, "did you mean 'pull'"),
    ({"extra": {"pull": "sometimes"}}, "pull"),
    ({"extra": {"idle_timeout": -5}}, "idle_timeout"),
    ({"extra": {"idle_timeout": "soon"}}, "idle_timeout"),
    ({"extra": {"mount_hither": "no"}}, "mount_hither"),
    ({"pids_limit": 0}, "pids_limit"),
    ({"network": " "}, "network"),
    ({"memroy": "2g"}, "memroy"),
])
def test_a_mistake_is_named_when_the_options_are_made(options, field):
    with pytest.raises(ValueError, match=field):
        ContainerOptions(**options)
    with pytest.raises(ConfigError, match=field):
        hi.Config(container_options=options)


def test_good_options_pass():
    o = ContainerOptions(memory="512m", binds=["/data:/data:ro"],
                         extra={"pull": "never", "idle_timeout": 5, "mount_hither": False})
    assert o.memory == "512m"
    assert ContainerOptions(memory="2GB").memory == "2GB"


def test_an_unknown_raw_docker_argument_is_named_at_the_runner():
    with pytest.raises(ContainerError, match="'mem_limt'.*did you mean 'mem_limit'"):
        DockerRunner(ContainerOptions(extra={"docker": {"mem_limt": "1g"}}))
    DockerRunner(ContainerOptions(extra={"docker": {"shm_size": "1g"}}))


def test_hardening_by_default_and_each_part_can_be_turned_off():
    kw = create_kwargs("img", ContainerOptions(), [], ["true"], "/w", "job")
    assert kw["pids_limit"] == 4096 and kw["read_only"] is True and kw["init"] is True
    assert kw["tmpfs"] == {"/tmp": "rw,nosuid,nodev,mode=1777"}
    assert kw["security_opt"] == ["no-new-privileges"] and kw["cap_drop"] == ["ALL"]
    assert kw["environment"]["HOME"] == "/tmp"  # a writable home on a read-only image
    off = create_kwargs("img", ContainerOptions(pids_limit=None, read_only=False, init=False,
                                                no_new_privileges=False, cap_drop=[]),
                        [], ["true"], "/w", "job")
    for key in ("pids_limit", "read_only", "tmpfs", "init", "security_opt", "cap_drop"):
        assert key not in off
    assert "HOME" not in off["environment"]
