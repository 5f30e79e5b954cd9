"""hi.Config, the plugin registry, hi.wait / hi.reset."""
import asyncio
import threading
import time
import types
import warnings

import pytest

import hither as hi
import hither.plugins.registry as registry
from hither import config as hconfig
import core_funcs as cf
from core_funcs import add, sleep_then


# ----------------------------------------------------------------- hi.Config
def test_config_nested_contexts_inherit(make_pjh):
    jh = make_pjh(1)
    assert hconfig.current().job_handler is None
    with hi.Config(job_handler=jh, job_timeout=30):
        with hi.Config(force_run=True):
            c = hconfig.current()
            assert c.job_handler is jh and c.force_run is True and c.job_timeout == 30
            job = add.run(x=1, y=2)
            assert job.handler is jh and job.config.job_timeout == 30
            with hi.Config(job_handler=None, job_timeout=None):
                assert hconfig.current().job_handler is None
                assert hconfig.current().force_run is True
                j2 = add.run(x=1, y=2)
                assert j2.handler is not jh
                assert j2.get_runtime_info().pid is not None
        assert hconfig.current().force_run is False
        assert hconfig.current().job_handler is jh
    assert hconfig.current().job_handler is None and hconfig.current().job_timeout is None
    assert job.wait(timeout=30) == 3


def test_config_snapshot_is_taken_at_run(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        job = sleep_then.run(t=0.2, x=1)
    # leaving the block does not move the job
    assert job.handler is jh and job.wait(timeout=30) == 1


def test_config_object_reusable_and_reentrant(make_pjh):
    jh = make_pjh(1)
    cfg = hi.Config(job_handler=jh)
    with cfg:
        with cfg:
            assert hconfig.current().job_handler is jh
        assert hconfig.current().job_handler is jh
    assert hconfig.current().job_handler is None
    with cfg:
        assert hconfig.current().job_handler is jh


def test_config_is_per_thread(make_pjh):
    jh = make_pjh(1)
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def holder():
        with hi.Config(job_handler=jh, force_run=True):
            seen["holder_job"] = add.run(x=1, y=1)
            entered.set()
            release.wait(20)
            seen["holder_after"] = hconfig.current().job_handler

    def other():
        seen["other_cfg"] = hconfig.current()
        seen["other_job"] = add.run(x=2, y=2)

    t1 = threading.Thread(target=holder)
    t1.start()
    assert entered.wait(20)
    t2 = threading.Thread(target=other)
    t2.start()
    t2.join(20)
    # nor does this (main) thread see the holder's config
    assert hconfig.current().job_handler is None
    release.set()
    t1.join(20)
    assert seen["other_cfg"].job_handler is None and seen["other_cfg"].force_run is False
    assert seen["other_job"].handler is not jh
    assert seen["holder_job"].handler is jh and seen["holder_after"] is jh
    assert seen["other_job"].wait(timeout=30) == 4
    assert seen["holder_job"].wait(timeout=30) == 2


def test_config_is_per_asyncio_task(make_pjh):
    jh = make_pjh(1)

    async def with_config(ev_in, ev_out):
        with hi.Config(job_handler=jh):
            ev_in.set()
            await ev_out.wait()
            return hconfig.current().job_handler

    async def without(ev_in, ev_out):
        await ev_in.wait()
        h = hconfig.current().job_handler
        job = add.run(x=3, y=4)
        ev_out.set()
        return h, job

    async def main():
        ev_in, ev_out = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(with_config(ev_in, ev_out), without(ev_in, ev_out))

    inside, (outside, job) = asyncio.run(main())
    assert inside is jh
    assert outside is None
    assert job.handler is not jh and job.wait() == 7


@pytest.mark.parametrize("kwargs", [
    {"job_handler": 5}, {"job_handler": "parallel"}, {"container": 3}, {"container": ["docker://x"]},
    {"job_cache": "folder"}, {"job_timeout": -1}, {"job_timeout": 0}, {"job_timeout": True},
    {"job_timeout": "5"}, {"force_run": "yes"}, {"force_run": 1}, {"download_results": 0},
])
def test_config_bad_values_raise_config_error(kwargs):
    with pytest.raises(hi.errors.ConfigError) as ei:
        hi.Config(**kwargs)
    assert list(kwargs)[0] in str(ei.value)
    assert isinstance(ei.value, hi.HitherError)


def test_config_good_values_accepted():
    for kw in ({"job_timeout": 2}, {"job_timeout": 0.5}, {"job_timeout": None}, {"container": True},
               {"container": False}, {"container": None}, {"container": "docker://python:3.11"},
               {"force_run": None}, {"download_results": True}, {"job_handler": None}):
        with hi.Config(**kw):
            pass


@pytest.fixture
def no_installed_container_runners(monkeypatch):
    """A machine without hither-container: hide installed container runner entry points."""
    registry.names("container_runners")  # discovered now, then hidden for this test
    monkeypatch.setitem(registry._specs, "container_runners", {})
    for key in [k for k in registry._loaded if k[0] == "container_runners"]:
        monkeypatch.delitem(registry._loaded, key)


@pytest.mark.parametrize("use_parallel", [False, True])
def test_container_true_without_runner_plugin_is_config_error(tmp_path, make_pjh, use_parallel,
                                                             no_installed_container_runners):
    assert "docker" not in registry.names("container_runners"), "a docker runner plugin is installed"
    marker = tmp_path / "ran"

    @hi.function('core_in_container', '0.1.0')
    @hi.container('docker://python:3.11')
    def core_in_container(path):
        open(path, "w").close()
        return 1

    handler = make_pjh(1) if use_parallel else None
    with hi.Config(job_handler=handler, container=True):
        with pytest.raises(hi.errors.ConfigError) as ei:
            core_in_container.run(path=str(marker))
    msg = str(ei.value)
    assert "pip install hither-container" in msg
    assert "docker://python:3.11" in msg
    time.sleep(0.3)
    assert not marker.exists(), "the job ran on the host anyway"
    # the same function without container=True runs on the host
    with hi.Config(job_handler=handler):
        assert core_in_container.run(path=str(marker)).wait(timeout=30) == 1
    assert marker.exists()


def test_container_image_string_without_runner_plugin_is_config_error(no_installed_container_runners):
    with hi.Config(container="docker://python:3.11"):
        with pytest.raises(hi.errors.ConfigError, match="pip install hither-container"):
            add.run(x=1, y=2)
    with hi.Config(container="shub://some/image"):
        with pytest.raises(hi.errors.ConfigError, match="hither-container"):
            add.run(x=1, y=2)


def test_container_true_on_function_without_container_runs_on_host():
    with hi.Config(container=True):
        job = add.run(x=1, y=2)
    assert job.container is None and job.wait() == 3


# ----------------------------------------------------------------- registry
def _installed(dist):
    """Whether a hither plugin distribution is installed (then its names load instead)."""
    from importlib import metadata

    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_registry_load_missing_plugin_has_pip_hint():
    for group, name, dist in (("job_handlers", "slurm", "hither-slurm"),
                              ("container_runners", "docker", "hither-container")):
        if _installed(dist):
            assert registry.load(group, name).name == name
            continue
        with pytest.raises(hi.errors.PluginNotInstalledError) as ei:
            registry.load(group, name)
        assert f"pip install {dist}" in str(ei.value)
        assert isinstance(ei.value, ImportError)
    with pytest.raises(hi.errors.PluginNotInstalledError) as ei:
        registry.load("caches", "core_no_such_cache")
    assert "core_no_such_cache" in str(ei.value)
    with pytest.raises(hi.errors.PluginError):
        registry.load("no_such_group", "x")


def test_registry_finds_core_handlers():
    assert registry.load("job_handlers", "parallel") is hi.ParallelJobHandler
    assert registry.load("job_handlers", "default") is hi.DefaultJobHandler
    assert {"default", "parallel"} <= set(registry.names("job_handlers"))


@pytest.mark.parametrize("name,dist", [("SlurmJobHandler", "hither-slurm"),
                                       ("RemoteJobHandler", "hither-remote"),
                                       ("ComputeResource", "hither-remote")])
def test_plugin_exports_say_what_to_install(name, dist):
    if _installed(dist):
        assert getattr(hi, name).__name__ == name
        return
    with pytest.raises(ImportError) as ei:
        getattr(hi, name)
    assert f"pip install {dist}" in str(ei.value)


def test_star_import_of_hither_works():
    # __all__ lists the plugin exports; without their packages installed, a star import
    # must still work (it should not raise PluginNotInstalledError)
    ns = {}
    exec("from hither import *", ns)
    assert "Config" in ns and "function" in ns


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError):
        hi.no_such_thing_xyz  # noqa: B018


def test_broken_plugin_warns_and_counts_as_absent(tmp_path, monkeypatch):
    (tmp_path / "core_broken_plugin_mod.py").write_text("raise RuntimeError('plugin import exploded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register("job_handlers", "core_broken", "core_broken_plugin_mod:Handler")
    try:
        with pytest.warns(UserWarning, match="core_broken") as rec:
            with pytest.raises(hi.errors.PluginNotInstalledError) as ei:
                registry.load("job_handlers", "core_broken")
        assert "plugin import exploded" in str(rec[0].message)
        assert "broken" in str(ei.value)
    finally:
        registry.unregister("job_handlers", "core_broken")


def test_broken_container_runner_plugin_gives_config_error_not_host_run(tmp_path, monkeypatch,
                                                                       no_installed_container_runners):
    (tmp_path / "core_broken_runner_mod.py").write_text("import core_no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.register("container_runners", "docker", "core_broken_runner_mod:Runner")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with hi.Config(container=True):
                with pytest.raises(hi.errors.ConfigError, match="hither-container"):
                    cf.mult.run(x=2, y=3)
    finally:
        registry.unregister("container_runners", "docker")


def test_register_object_and_duplicate_register():
    class Dummy:
        pass

    registry.register("exports", "CoreDummyExport", Dummy)
    try:
        assert registry.load("exports", "CoreDummyExport") is Dummy
        with pytest.raises(hi.errors.PluginError):
            registry.register("exports", "CoreDummyExport", object())
    finally:
        registry.unregister("exports", "CoreDummyExport")
    with pytest.raises(hi.errors.PluginNotInstalledError):
        registry.load("exports", "CoreDummyExport")


class _FakeEP:
    def __init__(self, name, value, dist):
        self.name, self.value = name, value
        self.dist = types.SimpleNamespace(name=dist)


def test_discover_duplicate_names_across_distributions_is_plugin_error(monkeypatch):
    # Faking the entry points of installed distributions is the only way to have two
    # distributions claim one name without installing packages: _discover reads them
    # through importlib.metadata.entry_points, which we replace here (in hither.plugins.registry only).
    def fake_entry_points(group):
        assert group == "hither.caches"
        return [_FakeEP("file", "pkg_one.backend:FileBackend", "pkg-one"),
                _FakeEP("file", "pkg_two.backend:OtherBackend", "pkg-two")]

    monkeypatch.setattr(registry, "metadata", types.SimpleNamespace(entry_points=fake_entry_points))
    monkeypatch.setattr(registry, "_specs", {})
    monkeypatch.setattr(registry, "_loaded", {})
    with pytest.raises(hi.errors.PluginError) as ei:
        registry.load("caches", "file")
    msg = str(ei.value)
    assert "pkg-one" in msg and "pkg-two" in msg and "'file'" in msg


def test_discover_same_entry_point_twice_is_fine(monkeypatch):
    # one distribution seen twice (e.g. on two sys.path entries) is not a conflict
    def fake_entry_points(group):
        return [_FakeEP("x", "json:dumps", "pkg-one"), _FakeEP("x", "json:dumps", "pkg-one")]

    monkeypatch.setattr(registry, "metadata", types.SimpleNamespace(entry_points=fake_entry_points))
    monkeypatch.setattr(registry, "_specs", {})
    monkeypatch.setattr(registry, "_loaded", {})
    import json

    assert registry.load("exports", "x") is json.dumps


# ----------------------------------------------------------------- hi.wait / hi.reset / progress
def test_hi_wait_waits_for_all(make_pjh):
    with hi.Config(job_handler=make_pjh(2)):
        jobs = [sleep_then.run(t=0.3, x=i) for i in range(4)]
        dep = add.run(x=jobs[0], y=jobs[3])
    hi.wait()
    assert all(j.is_done() for j in jobs + [dep])
    assert dep.get_result() == 3


def test_hi_wait_does_not_raise_for_failed_jobs(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        bad = cf.fail_value_error.run(msg="quiet")
    hi.wait(timeout=30)
    assert bad.get_status() == hi.JobStatus.ERROR


def test_hi_wait_timeout(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        job = sleep_then.run(t=2, x=1)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        hi.wait(timeout=0.3)
    assert time.monotonic() - t0 < 1.5
    assert not job.is_done()


def test_hi_reset_cancels_unfinished_jobs(make_pjh):
    jh = make_pjh(1)
    with hi.Config(job_handler=jh):
        running = sleep_then.run(t=30, x=1)
        queued = sleep_then.run(t=30, x=2)
        pending = add.run(x=running, y=1)
    time.sleep(0.3)
    t0 = time.monotonic()
    hi.reset()
    for j in (running, queued):
        with pytest.raises(hi.JobCancelledException):
            j.wait(timeout=5)
        assert j.get_status() == hi.JobStatus.CANCELLED
    # the pending job is cancelled too, or (when its input was cancelled first) fails
    # because its input was cancelled; either way it ends at once
    with pytest.raises((hi.JobCancelledException, hi.DependencyFailedError), match="cancelled"):
        pending.wait(timeout=5)
    assert time.monotonic() - t0 < 5
    from hither.jobs.manager import manager

    assert not manager.active_jobs()
    # a handler shut down by reset says so; a new one works
    with hi.Config(job_handler=jh):
        j = add.run(x=1, y=1)
    with pytest.raises(hi.HitherError, match="shut down"):
        j.wait(timeout=5)
    with hi.Config(job_handler=make_pjh(1)):
        assert add.run(x=1, y=1).wait(timeout=30) == 2


# ----------------------------------------------------------------- plugin checks and exports
def test_registry_checks_interface_and_name():
    from hither.plugins.interfaces import CacheBackend

    class NotABackend:
        name = "nab"

    class Misnamed(CacheBackend):
        name = "other"

        def get(self, job_hash):
            return None

        def put(self, entry):
            pass

        def delete(self, job_hash):
            return False

        def iter_hashes(self):
            return iter(())

    registry.register("caches", "nab", NotABackend)
    registry.register("caches", "misnamed", Misnamed)
    try:
        with pytest.raises(hi.errors.PluginError, match="not a subclass of hither.plugins.interfaces.CacheBackend"):
            registry.load("caches", "nab")
        with pytest.raises(hi.errors.PluginError, match="registered as 'misnamed'.*name = 'other'"):
            registry.load("caches", "misnamed")
    finally:
        registry.unregister("caches", "nab")
        registry.unregister("caches", "misnamed")


def test_exports_are_data_driven():
    """Any package can add hi.<Name> through the hither.exports group, without editing core."""
    marker = object()
    registry.register("exports", "SomethingNew", marker)
    try:
        assert hi.SomethingNew is marker
    finally:
        registry.unregister("exports", "SomethingNew")
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        hi.NoSuchThing
