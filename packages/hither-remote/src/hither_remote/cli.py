"""The ``hither-remote`` command: ``serve`` a compute resource, ``status``, ``jobs``, ``logs``, ``cancel``.

Every option also reads an environment variable ``HITHER_REMOTE_<OPTION>`` (e.g.
``HITHER_REMOTE_MONGO_URL``, ``HITHER_REMOTE_WORKERS``) and a TOML file given with
``--config`` (before the command); the secret only from ``$HITHER_REMOTE_SECRET`` or
``--secret-file``, never from the command line or the config file::

    HITHER_REMOTE_SECRET=... hither-remote serve --resource-id resource1 --workers 4
    hither-remote status
    hither-remote jobs --limit 20
    hither-remote cancel 3f2a...
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import click

from hither.errors import ConfigError

from .slurm_cli import SlurmCommand, handler_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from .bus import Bus

_ctx = dict(help_option_names=["-h", "--help"], show_default=True)


def _database(mongo_url: str, database: str):  # noqa: ANN202
    from hither.models import Database

    return Database(mongo_url=mongo_url, database=database)


@contextlib.contextmanager
def _open_bus(mongo_url: str, database: str) -> Iterator["Bus"]:
    """The job bus of the command's options, closed afterwards."""
    from .bus import Bus

    bus = Bus(_database(mongo_url, database), server_selection_timeout_ms=3000)
    try:
        yield bus
    finally:
        bus.close()


def _no_job(job_id: str) -> click.ClickException:
    return click.ClickException(f"no job {job_id} on this bus (see: hither-remote jobs)")


def _job_command(fn: Callable[..., None]) -> click.Command:
    """A command that acts on one job of the bus: ``hither-remote NAME JOB_ID [options]``
    with the bus options (``logs``, ``cancel``)."""
    return main.command()(_mongo(_db(click.argument("job_id")(fn))))


_mongo = click.option("--mongo-url", show_envvar=True, envvar="HITHER_REMOTE_MONGO_URL", default="mongodb://127.0.0.1:27017", show_default=True,
                      help="MongoDB holding the job bus")
_db = click.option("--database", show_envvar=True, envvar="HITHER_REMOTE_DATABASE", default="hither", show_default=True, help="database of the job bus")


def _load_config(ctx: click.Context, param: click.Parameter, path: Optional[str]) -> None:
    """Option defaults from a TOML file: top-level keys for every command, a ``[serve]``
    (``[status]``, ...) table for one; command-line options and env vars still win."""
    if not path:
        return
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", ctx=ctx, param=param) from None
    if "secret" in data or any(isinstance(v, dict) and "secret" in v for v in data.values()):
        raise click.BadParameter("the secret does not belong in the config file; use $HITHER_REMOTE_SECRET "
                                 "or secret-file = \"PATH\"", ctx=ctx, param=param)
    common = {k.replace("-", "_"): v for k, v in data.items() if not isinstance(v, dict)}
    ctx.default_map = {name: {**common, **{k.replace("-", "_"): v for k, v in data.get(name, {}).items()}}
                       for name in ("serve", "status", "jobs", "logs", "cancel", "prune")}


def _duration(value: object, param: Optional[click.Parameter] = None) -> float:
    from hither.plugins.cli import parse_duration

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _retention_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The retention options of ``serve`` and ``prune`` (``hither_remote.retention``)."""
    from .retention import DEFAULT_MAX_JOBS

    for opt in reversed([
        click.option("--keep-for", show_envvar=True, envvar="HITHER_REMOTE_KEEP_FOR", default="7d", show_default=True,
                     callback=lambda ctx, p, v: _duration(v, p), help="ended jobs are removed this long after they ended"),
        click.option("--keep-jobs", show_envvar=True, envvar="HITHER_REMOTE_KEEP_JOBS", type=click.IntRange(min=0),
                     default=DEFAULT_MAX_JOBS, show_default=True, help="ended jobs kept per resource at most (the newest)"),
        click.option("--dead-after", show_envvar=True, envvar="HITHER_REMOTE_DEAD_AFTER", default="1h",
                     show_default=True, callback=lambda ctx, p, v: _duration(v, p),
                     help="a serving process silent this long (killed) is removed from the status")]):
        fn = opt(fn)
    return fn


@click.group(context_settings=_ctx)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), envvar="HITHER_REMOTE_CONFIG",
              show_envvar=True, callback=_load_config, expose_value=False, is_eager=True,
              help="TOML file of option defaults (keys as the options, e.g. resource-id = \"r1\")")
def main() -> None:
    """Run hither jobs on a compute resource through a MongoDB job bus."""


@main.command(cls=SlurmCommand)  # + the --slurm-* options, from hither-slurm's options model
@_mongo
@_db
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
@click.option("--log-level", show_envvar=True, envvar="HITHER_REMOTE_LOG_LEVEL", default="INFO", show_default=True)
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
              callback=lambda ctx, p, v: _duration(v, p), help="how often the retention is applied while serving")
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
    job_handler = _slurm_handler(**slurm) if handler_name == "slurm" else None  # type: ignore[arg-type]
    store = None
    if store_url:
        from hither_store import Store

        store = Store(store_url)
    try:
        cache = None
        if job_cache:
            from .resource_cache import job_cache_from_option

            cache = job_cache_from_option(job_cache)
        cr = ComputeResource(database=_database(mongo_url, database), compute_resource_id=resource_id,
                             store=store, secret_file=secret_file, workers=workers,
                             lease_seconds=lease_seconds, work_dir=work_dir, job_handler=job_handler,
                             containers=containers, container_engine=container_engine, job_cache=cache,
                             retention=Retention(keep_for, keep_jobs, dead_after), prune_every=prune_every)
    except ConfigError as exc:
        if job_handler is not None:
            job_handler.shutdown()
        raise click.ClickException(str(exc)) from None
    from .hiding import forget_env, undumpable

    forget_env(cr.hidden_env)  # the secret is loaded: nothing this process starts inherits it
    undumpable()  # nor reads its memory (unless root)
    try:
        if clear:
            click.echo(f"cleared {cr.clear()} finished jobs", err=True)
        cr.run()
    finally:
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
@_mongo
@_db
def status(mongo_url: str, database: str) -> None:
    """Resources seen on the bus (alive or not) and how many jobs are in each state."""
    with _open_bus(mongo_url, database) as bus:
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
@_mongo
@_db
@click.option("--limit", show_envvar=True, envvar="HITHER_REMOTE_LIMIT", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--resource-id", show_envvar=True, envvar="HITHER_REMOTE_RESOURCE_ID", default=None, help="only this resource's jobs")
def jobs(mongo_url: str, database: str, limit: int, resource_id: Optional[str]) -> None:
    """Recent jobs: id, resource, status, function, attempts, duration."""
    with _open_bus(mongo_url, database) as bus:
        for d in bus.recent_jobs(limit, resource_id):
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
def logs(mongo_url: str, database: str, job_id: str, follow: bool, interval: float) -> None:
    """JOB_ID's console output: while it runs, what its resource has shipped so far (stdout
    and stderr as they came, every ~0.5 s); once it has ended, stdout then stderr."""
    from .logs import read_chunks
    from .models import FINAL

    with _open_bus(mongo_url, database) as bus:
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
@_mongo
@_db
@click.option("--resource-id", show_envvar=True, envvar="HITHER_REMOTE_RESOURCE_ID", default=None,
              help="only this resource's part of the bus (default: every resource's)")
@_retention_options
def prune(mongo_url: str, database: str, resource_id: Optional[str], keep_for: float, keep_jobs: int,
          dead_after: float) -> None:
    """Apply the retention once: remove ended jobs (older than --keep-for, beyond the newest
    --keep-jobs), run records of expired jobs, stopped and silent serving processes, and
    orphaned log chunks. Queued and running jobs stay."""
    from .retention import Retention, prune as apply

    with _open_bus(mongo_url, database) as bus:
        removed = apply(bus, resource_id, Retention(keep_for, keep_jobs, dead_after))
    click.echo("removed " + ", ".join(f"{v} {k}" for k, v in removed.items()))


@_job_command
def cancel(mongo_url: str, database: str, job_id: str) -> None:
    """Cancel JOB_ID: at once if queued; a running job is killed by its resource."""
    with _open_bus(mongo_url, database) as bus:
        st = bus.request_cancel(job_id)
    if st is None:
        raise _no_job(job_id)
    click.echo(f"{job_id}: {st.value}")


if __name__ == "__main__":  # pragma: no cover - ``python -m hither_remote.cli``
    main()
