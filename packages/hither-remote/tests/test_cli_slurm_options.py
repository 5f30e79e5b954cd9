"""``hither-remote serve``'s ``--slurm-*`` options come from hither-slurm's options model
(``hither_remote.slurm_cli``): every field is an option with its env var, the older flag
names and env vars keep working, ranges are the model's, and the parsed values make a
valid ``SlurmJobHandler``."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

pytest.importorskip("hither_slurm", reason="needs hither-slurm")

from hither_slurm import SlurmJobHandler  # noqa: E402
from hither_slurm.options import SlurmOptions, parse_options  # noqa: E402

from hither_remote.cli import main  # noqa: E402
from hither_remote.slurm_cli import handler_kwargs, slurm_options  # noqa: E402


def _serve_params():
    serve = main.commands["serve"]
    with click.Context(serve) as ctx:
        return {p.name: p for p in serve.get_params(ctx)}


def _parse(args, env=None):
    """The SlurmJobHandler kwargs a command with the --slurm-* options parses from ``args``."""
    seen = {}

    @click.command(params=slurm_options())
    def cmd(**params):
        seen.update(handler_kwargs(params))

    r = CliRunner().invoke(cmd, args, env=env or {})
    return r, seen


def test_every_field_of_the_model_is_an_option_of_serve():
    params = _serve_params()
    help_text = CliRunner().invoke(main, ["serve", "--help"], terminal_width=400).output
    for field in SlurmOptions.model_fields:
        options = [p for p in params.values() if isinstance(p, click.Option) and p.name.startswith("slurm_")
                   and f"--slurm-{field.replace('_', '-')}" in p.opts + p.secondary_opts]
        assert len(options) == 1, f"no --slurm-{field.replace('_', '-')} option of serve"
        assert f"HITHER_REMOTE_SLURM_{field.upper()}" in options[0].envvar
        assert f"--slurm-{field.replace('_', '-')}" in help_text


def test_the_handler_takes_every_field_of_the_model():
    import inspect

    takes = set(inspect.signature(SlurmJobHandler.__init__).parameters) - {"self"}
    assert takes == set(SlurmOptions.model_fields)


def test_defaults_are_the_models_but_one_batch():
    r, kw = _parse([])
    assert r.exit_code == 0, r.output
    model = SlurmOptions(working_dir="/x")
    for field in SlurmOptions.model_fields:
        expected = {"working_dir": None, "max_simultaneous_batches": 1}.get(field, getattr(model, field))
        assert kw[field] == expected, field


def test_older_flags_and_env_vars_keep_working():
    r, kw = _parse(["--slurm-workers-per-batch", "3", "--slurm-cores-per-job", "1", "--slurm-time-limit", "90",
                    "--slurm-max-batches", "2", "--slurm-local-pilots", "--slurm-working-dir", "/w"])
    assert r.exit_code == 0, r.output
    assert (kw["num_workers_per_batch"], kw["num_cores_per_job"], kw["time_limit_per_batch"],
            kw["max_simultaneous_batches"], kw["use_slurm"], kw["working_dir"]) == (3, 1, 90.0, 2, False, "/w")
    r, kw = _parse([], env={"HITHER_REMOTE_SLURM_WORKERS_PER_BATCH": "5", "HITHER_REMOTE_SLURM_LOCAL_PILOTS": "1",
                            "HITHER_REMOTE_SLURM_PARTITION": "debug", "HITHER_REMOTE_SLURM_IDLE_TIMEOUT": "7"})
    assert r.exit_code == 0, r.output
    assert (kw["num_workers_per_batch"], kw["use_slurm"], kw["partition"], kw["idle_timeout"]) == (5, False, "debug", 7.0)
    r, kw = _parse(["--slurm-use-slurm"], env={"HITHER_REMOTE_SLURM_LOCAL_PILOTS": "1"})
    assert kw["use_slurm"] is True  # the command line wins


def test_new_fields_types_and_ranges_come_from_the_model():
    r, kw = _parse(["--slurm-num-workers-per-batch", "4", "--slurm-gpus-per-job", "1", "--slurm-account", "lab",
                    "--slurm-mem-per-job", "2G", "--slurm-additional-sbatch-opts", "--constraint=a",
                    "--slurm-additional-sbatch-opts=--qos=low", "--slurm-pending-timeout", "inf",
                    "--slurm-working-dir", "/w"])
    assert r.exit_code == 0, r.output
    assert kw["num_workers_per_batch"] == 4 and kw["gpus_per_job"] == 1 and kw["account"] == "lab"
    assert kw["additional_sbatch_opts"] == ["--constraint=a", "--qos=low"]
    opts = parse_options(**kw)  # what SlurmJobHandler validates
    assert opts.pending_timeout is None and opts.mem_per_job == "2G"
    for bad in (["--slurm-workers-per-batch", "0"], ["--slurm-idle-timeout", "0"], ["--slurm-gpus-per-job", "-1"],
                ["--slurm-poll-interval", "6"], ["--slurm-cores-per-job", "x"]):
        r, _ = _parse(bad)
        assert r.exit_code == 2 and "Invalid value" in r.output, (bad, r.output)


def test_serve_help_without_hither_slurm():
    code = ("import sys; sys.modules['hither_slurm'] = None; from hither_remote.cli import main; "
            "main(['serve', '--help'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--resource-id" in out.stdout and "--slurm-" not in out.stdout, out.stderr
