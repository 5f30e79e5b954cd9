"""The ``hither-remote`` command: ``serve`` a compute resource, ``status``, ``jobs``, ``logs``, ``cancel``.

Every option also reads an environment variable ``HITHER_REMOTE_<OPTION>`` (e.g.
``HITHER_REMOTE_MONGO_URL``, ``HITHER_REMOTE_WORKERS``) and a TOML file given with
``--config`` (before the command); the secret only from ``$HITHER_REMOTE_SECRET`` or
``--secret-file``, never from the command line or the config file::

    HITHER_REMOTE_SECRET=... hither-remote serve --resource-id resource1 --workers 4
    hither-remote status
    hither-remote jobs --limit 20
    hither-remote cancel 3f2a...

What the commands share (the bus options, ``--config``, errors in one or two lines, never a
traceback) is in ``cli_support``.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Callable, Optional

import click

from hither.errors import ConfigError

from .__about__ import __version__
from .cli_support import (DURATION_HELP, LOG_LEVELS, RemoteGroup, bus_options, duration, load_config, open_bus,
                          serve_bus_options, shown_url)
from .slurm_cli import SlurmCommand, handler_kwargs

_ctx = dict(help_option_names=["-h", "--help"], show_default=True)


def _database(mongo_url: str, database: str):  # noqa: ANN202
    from hither.models import Database

    return Database(mongo_url=mongo_url, database=database)


def _no_job(job_id: str) -> click.ClickException:
    return click.ClickException(f"no job {job_id} on this bus (see: hither-remote jobs)")


def _job_command(fn: Callable[..., None]) -> click.Command:
    """A command that acts on one job of the bus: ``hither-remote NAME JOB_ID [options]``
    with the bus options (``logs``, ``cancel``)."""
    return main.command()(bus_options(click.argument("job_id")(fn)))


def _retention_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The retention options of ``serve`` and ``prune`` (``hither_remote.retention``)."""
    from .retention import DEFAULT_MAX_JOBS

    for opt in reversed([
        click.option("--keep-for", show_envvar=True, envvar="HITHER_REMOTE_KEEP_FOR", default="7d", show_default=True,
                     callback=lambda ctx, p, v: duration(v, p), help=f"ended jobs are removed this long after they ended {DURATION_HELP}"),
        click.option("--keep-jobs", show_envvar=True, envvar="HITHER_REMOTE_KEEP_JOBS", type=click.IntRange(min=0),
                     default=DEFAULT_MAX_JOBS, show_default=True, help="ended jobs kept per resource at most (the newest)"),
        click.option("--dead-after", show_envvar=True, envvar="HITHER_REMOTE_DEAD_AFTER", default="1h",
                     show_default=True, callback=lambda ctx, p, v: duration(v, p),
                     help=f"a serving process silent this long (killed) is removed from the status {DURATION_HELP}")]):
        fn = opt(fn)
    return fn


@click.group(cls=RemoteGroup, context_settings=_ctx)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), envvar="HITHER_REMOTE_CONFIG",
              show_envvar=True, callback=load_config, expose_value=False, is_eager=True,
              help="TOML file of option defaults (keys as the options, e.g. resource-id = \"r1\"; "
                   "a [serve] table for one command); an unknown key is refused")
@click.option("-v", "--verbose", is_flag=True, default=False, help="log debug messages and the traceback of a failure")
@click.version_option(__version__, "--version", prog_name="hither-remote")
def main(verbose: bool) -> None:
    """Run hither jobs on a compute resource through a MongoDB job bus."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:  # a plugin that does not load is named in the command's error (one line)
        warnings.filterwarnings("ignore", message="hither plugin .* failed to load")


@main.command(cls=SlurmCommand)  # + the --slurm-* options, from hither-slurm's options model
@serve_bus_options
@click.option("--resource-id", show_envvar=True, envvar="HITHER_REMOTE_RESOURCE_ID", required=True, help="the compute_resource_id clients send jobs to")
@click.option("--workers", show_envvar=True, envvar="HITHER_REMOTE_WORKERS", type=click.IntRange(min=1), default=None,
              help="jobs run at once (default: 1; with --handler slurm, workers per batch x max batches)")
@click.option("--handler", "handler_name", show_envvar=True, envvar="HITHER_REMOTE_HANDLER",
              type=click.Choice(["parallel", "slurm"]), default="parallel", show_default=True,
              help="parallel: each job in a fresh fork of a warm job server here; slurm: in pilot batches of a "
                   "SlurmJobHandler (needs hither-slurm)")
@click.option("--store-url", show_envvar=True, envvar="HITHER_REMOTE_STORE_URL", default=None, help="content store shared with clients (default $HITHER_STORE_URL)")
@click.option("--lease-seconds", show_envvar=True, envvar="HITHER_REMOTE_LEASE_SECONDS", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="a claimed job goes back to the queue this long after this process stops renewing it")
@click.option("--work-dir", show_envvar=True, envvar="HITHER_REMOTE_WORK_DIR", default=None, help="where job directories are made (default: temp folder)")
@click.option("--secret-file", show_envvar=True, envvar="HITHER_REMOTE_SECRET_FILE", default=None, type=click.Path(dir_okay=False),
              help="file holding the shared secret (default: $HITHER_REMOTE_SECRET)")
@click.option("--clear/--no-clear", show_envvar=True, envvar="HITHER_REMOTE_CLEAR", default=False, help="remove collected finished jobs first")
@click.option("--log-level", show_envvar=True, envvar="HITHER_REMOTE_LOG_LEVEL", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False), help="least important messages logged")
@click.option("--containers/--no-containers", show_envvar=True, envvar="HITHER_REMOTE_CONTAINERS", default=None,
              help="run container jobs in their image (--containers: an engine must answer at start), or refuse "
                   "them; default: run them when a container engine for the image answers here")
@click.option("--container-engine", show_envvar=True, envvar="HITHER_REMOTE_CONTAINER_ENGINE", default=None,
              help="container runner for container jobs (docker, apptainer, ...; default: by preference)")
@click.option("--job-cache", show_envvar=True, envvar="HITHER_REMOTE_JOB_CACHE", default=None,
              help="job cache of this resource, consulted before a job runs: a folder, or "
                   "mongodb://HOST:PORT/DATABASE (default: none)")
@_retention_options
@click.option("--prune-every", show_envvar=True, envvar="HITHER_REMOTE_PRUNE_EVERY", default="10m", show_default=True,
              callback=lambda ctx, p, v: duration(v, p),
              help=f"how often the retention is applied while serving {DURATION_HELP}")
def serve(mongo_url: str, database: str, resource_id: str, workers: Optional[int], handler_name: str,
          store_url: Optional[str], lease_seconds: float, work_dir: Optional[str], secret_file: Optional[str],
          clear: bool, log_level: str, containers: Optional[bool], container_engine: Optional[str],
          job_cache: Optional[str], keep_for: float, keep_jobs: int, dead_after: float, prune_every: float,
          **slurm: object) -> None:
    """Serve RESOURCE_ID's jobs until SIGINT/SIGTERM (unfinished jobs go back to the queue),
    applying the retention (--keep-for, --keep-jobs, --dead-after) to its part of the bus."""
    from .resource import ComputeResource
    from .retention import Retention

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = None
    if store_url:  # a bad URL or a missing extra: one line (RemoteGroup), before anything starts
        from hither_store import Store

        store = Store(store_url)
    cache = None
    if job_cache:
        from .resource_cache import job_cache_from_option

        cache = job_cache_from_option(job_cache)  # without hither-cache: how to install it
    job_handler = _slurm_handler(**slurm) if handler_name == "slurm" else None  # type: ignore[arg-type]
    try:
        cr = ComputeResource(database=_database(mongo_url, database), compute_resource_id=resource_id,
                             store=store, secret_file=secret_file, workers=workers,
                             lease_seconds=lease_seconds, work_dir=work_dir, job_handler=job_handler,
                             containers=containers, container_engine=container_engine, job_cache=cache,
                             retention=Retention(keep_for, keep_jobs, dead_after), prune_every=prune_every)
    except BaseException:
        if job_handler is not None:
            job_handler.shutdown()
        raise  # a ConfigError (any HitherError) becomes one line in RemoteGroup
    from .hiding import forget_env, undumpable

    forget_env(cr.hidden_env)  # the secret is loaded: nothing this process starts inherits it
    undumpable()  # nor reads its memory (unless root)
    try:
        if clear:
            click.echo(f"cleared {cr.clear()} finished jobs", err=True)
        cr.run()
    finally:
        cr.bus.close()  # its monitor threads would hold the exit up
        if job_handler is not None:
            job_handler.shutdown()  # its batches end with this process


def _slurm_handler(**options: object):  # noqa: ANN202
    """The SlurmJobHandler of ``serve --handler slurm``, from its ``--slurm-*`` options
    (``hither_remote.slurm_cli``)."""
    try:
        from hither_slurm import SlurmJobHandler
    except ImportError:
        raise click.ClickException("--handler slurm needs the hither-slurm package on this machine: "
                                   "pip install hither-slurm") from None
    kwargs = handler_kwargs(options)
    if not kwargs.get("working_dir"):
        raise click.UsageError("--handler slurm needs --slurm-working-dir (or $HITHER_REMOTE_SLURM_WORKING_DIR): "
                               "a folder this machine and the Slurm nodes share")
    try:
        return SlurmJobHandler(**kwargs)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@bus_options
def status(mongo_url: str, database: str, connect_timeout: float) -> None:
    """Resources seen on the bus (alive or not) and how many jobs are in each state."""
    with open_bus(mongo_url, database, connect_timeout) as bus:
        now = time.time()
        records = bus.resource_records()
        if not records:
            click.echo("no compute resource has been seen on this bus")
        for hb in sorted(records, key=lambda h: (h.resource_id, h.owner)):
            age = now - hb.last_seen
            state = "stopped" if hb.stopped else ("alive" if age < 30 else "not responding")
            click.echo(f"{hb.resource_id}\t{hb.owner}\t{state}\theartbeat {age:.1f} s ago\t"
                       f"running {hb.running}/{hb.capacity}")
        counts = bus.counts()
        click.echo("jobs: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@main.command()
@bus_options
@click.option("--limit", show_envvar=True, envvar="HITHER_REMOTE_LIMIT", type=click.IntRange(min=1), default=20,
              show_default=True, help="the newest jobs shown at most")
@click.option("--resource-id", show_envvar=True, envvar="HITHER_REMOTE_RESOURCE_ID", default=None, help="only this resource's jobs")
def jobs(mongo_url: str, database: str, connect_timeout: float, limit: int, resource_id: Optional[str]) -> None:
    """Recent jobs: id, resource, status, function, attempts, duration."""
    with open_bus(mongo_url, database, connect_timeout) as bus:
        found = bus.recent_jobs(limit, resource_id)
        if not found:
            where = f" of resource {resource_id!r}" if resource_id else ""
            click.echo(f"no jobs{where} on the bus {shown_url(mongo_url)} (database {database!r})", err=True)
        for d in found:
            dur = ""
            if d.get("started") and d.get("ended"):
                dur = f"{d['ended'] - d['started']:.2f}s"
            elif d.get("started"):
                dur = f"{time.time() - d['started']:.1f}s (running)"
            click.echo(f"{d['_id']}\t{d['resource_id']}\t{d['status']}\t{d['function_name']}\t"
                       f"attempts {d.get('attempts', 0)}\t{dur}")


@_job_command
@click.option("--follow", "-f", is_flag=True, default=False,
              help="stream the output until the job ends")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.3, show_default=True,
              help="seconds between two reads of the bus with --follow")
def logs(mongo_url: str, database: str, connect_timeout: float, job_id: str, follow: bool, interval: float) -> None:
    """JOB_ID's console output: while it runs, what its resource has shipped so far (stdout
    and stderr as they came, every ~0.5 s); once it has ended, stdout then stderr."""
    from .logs import read_chunks
    from .models import FINAL

    with open_bus(mongo_url, database, connect_timeout) as bus:
        job = bus.get(job_id)
        if job is None:
            raise _no_job(job_id)
        shown = -1
        attempt: Optional[int] = None
        while True:
            ended = job.status in FINAL
            runtime = ((job.outcome.packed.get("runtime") if job.outcome is not None else None) or {}) if ended else {}
            if ended and runtime and (not follow or shown < 0):
                # the whole output, from the outcome (not cut at the bus's cap)
                click.echo(runtime.get("stdout", ""), nl=False)
                click.echo(runtime.get("stderr", ""), nl=False, err=True)
                return
            for chunk in read_chunks(bus, job_id, shown, attempt):
                attempt = chunk.attempt  # the latest run when the first chunk was read
                click.echo(chunk.text, nl=False)
                shown = chunk.seq
            if ended or not follow:
                if shown < 0:
                    message = job.outcome.message if job.outcome is not None and job.outcome.message else ""
                    click.echo(f"{job_id}: {job.status.value}; no console output"
                               + (" yet" if not ended else "") + (f": {message}" if message else ""), err=True)
                elif ended:
                    click.echo(f"[{job_id}: {job.status.value}]", err=True)
                return
            time.sleep(interval)
            job = bus.get(job_id) or job


@main.command()
@bus_options
@click.option("--resource-id", show_envvar=True, envvar="HITHER_REMOTE_RESOURCE_ID", default=None,
              help="only this resource's part of the bus (default: every resource's)")
@_retention_options
def prune(mongo_url: str, database: str, connect_timeout: float, resource_id: Optional[str], keep_for: float, keep_jobs: int,
          dead_after: float) -> None:
    """Apply the retention once: remove ended jobs (older than --keep-for, beyond the newest
    --keep-jobs), run records of expired jobs, stopped and silent serving processes, and
    orphaned log chunks. Queued and running jobs stay."""
    from .retention import Retention, prune as apply

    with open_bus(mongo_url, database, connect_timeout) as bus:
        removed = apply(bus, resource_id, Retention(keep_for, keep_jobs, dead_after))
    click.echo("removed " + ", ".join(f"{v} {k}" for k, v in removed.items()))


@_job_command
def cancel(mongo_url: str, database: str, connect_timeout: float, job_id: str) -> None:
    """Cancel JOB_ID: at once if queued; a running job is killed by its resource."""
    with open_bus(mongo_url, database, connect_timeout) as bus:
        st = bus.request_cancel(job_id)
    if st is None:
        raise _no_job(job_id)
    click.echo(f"{job_id}: {st.value}")


if __name__ == "__main__":  # pragma: no cover - ``python -m hither_remote.cli``
    main()
