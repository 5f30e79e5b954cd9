"""SlurmJobHandler options: validation with clear errors, and the sbatch lines they make;
refusals at .run() (no Slurm needed: they happen before anything is queued)."""
import pytest

import hither as hi
from hither.errors import ConfigError
from hither_slurm.options import parse_options, sbatch_args, slurm_time

import slurm_funcs as sf


@pytest.mark.parametrize("kw, words", [
    ({"num_workers_per_batch": 0}, ["num_workers_per_batch", "greater than or equal to 1"]),
    ({"num_cores_per_job": "many"}, ["num_cores_per_job"]),
    ({"time_limit_per_batch": -5}, ["time_limit_per_batch"]),
    ({"mem_per_job": "lots"}, ["mem_per_job", "not a memory size"]),
    ({"additional_sbatch_opts": "--exclusive"}, ["additional_sbatch_opts", "list"]),
    ({"additional_srun_opts": ["exclusive"]}, ["additional_srun_opts", "start with '-'"]),
    ({"partitoin": "debug"}, ["partitoin", "Extra inputs"]),
    ({"working_dir": " "}, ["working_dir"]),
    ({"pending_timeout": 0}, ["pending_timeout", "greater than 0"]),
    ({"num_workers_per_batch": True}, ["num_workers_per_batch needs a number, got True"]),
    ({"idle_timeout": False}, ["idle_timeout needs a number"]),
    ({"idle_timeout": float("inf")}, ["idle_timeout", "must exit"]),
])
def test_bad_options_name_the_option(tmp_path, kw, words):
    kw = {"working_dir": str(tmp_path), **kw}
    with pytest.raises(ConfigError) as ei:
        parse_options(**kw)
    for w in words:
        assert w in str(ei.value)
    if "partitoin" not in kw:  # the handler's own constructor says the same
        with pytest.raises(ConfigError):
            hi.SlurmJobHandler(**kw)


def test_infinite_limits_mean_no_limit(tmp_path):
    o = parse_options(working_dir=str(tmp_path), time_limit_per_batch=float("inf"),
                      pending_timeout=float("inf"))
    assert o.time_limit_per_batch is None and o.pending_timeout is None
    assert not any(a.startswith("--time") for a in sbatch_args(o, "n", "/o"))


def test_sbatch_lines(tmp_path):
    o = parse_options(working_dir=str(tmp_path), num_workers_per_batch=4, num_cores_per_job=2,
                      time_limit_per_batch=3601, partition="debug", account="lab",
                      mem_per_job="1.5G", gpus_per_job=1, additional_sbatch_opts=["--exclusive"])
    args = sbatch_args(o, "hither-pilot-x", "/o")
    for a in ("--cpus-per-task=8", "--time=0-01:01:00", "--partition=debug", "--account=lab",
              "--mem=6144M", "--gres=gpu:4", "--exclusive", "--ntasks=1", "--job-name=hither-pilot-x"):
        assert a in args
    assert slurm_time(59) == "0-00:01:00" and slurm_time(86400 * 2 + 61) == "2-00:02:00"
    bare = sbatch_args(parse_options(working_dir=str(tmp_path)), "n", "/o")
    assert not any(a.startswith(("--time", "--mem", "--gres", "--partition")) for a in bare)


def test_refusals_at_run(tmp_path):
    jh = hi.SlurmJobHandler(working_dir=str(tmp_path), time_limit_per_batch=60, use_slurm=False)
    with hi.Config(job_handler=jh, job_timeout=120):
        with pytest.raises(ConfigError, match="exceeds this SlurmJobHandler's time_limit_per_batch=60"):
            sf.slurm_add.run(x=1, y=2)

    @hi.function("nested", "0.1.0")
    def nested():
        return 1

    with hi.Config(job_handler=jh):
        with pytest.raises(hi.errors.HitherError, match="nested function"):
            nested.run()
    assert jh.batches() == []  # nothing was started for refused jobs
    jh.shutdown()
    with pytest.raises(Exception, match="shut down"):
        with hi.Config(job_handler=jh):
            sf.slurm_add.run(x=1, y=2)


def test_found_through_entry_points():
    import hither.plugins.registry as registry
    from hither_slurm import SlurmJobHandler

    assert hi.SlurmJobHandler is SlurmJobHandler
    assert registry.load("job_handlers", "slurm") is SlurmJobHandler
    assert registry.load("exports", "SlurmJobHandler") is SlurmJobHandler
    assert SlurmJobHandler.name == "slurm" and issubclass(SlurmJobHandler, hi.JobHandler)
