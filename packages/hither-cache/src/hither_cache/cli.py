"""The ``hither-cache`` command: look into and clean a job cache.

    hither-cache --path ~/hither-cache stats
    hither-cache --path ~/hither-cache ls --function add
    hither-cache --mongo-url mongodb://db:27017 --database hither show 3f2a
    hither-cache --path ~/hither-cache clear --older-than 7d --yes

Durations are ``hither.plugins.cli``'s syntax (numbers with units: 90s, 15m, 12h, 7d,
2w, 1d12h), the same as ``hither-store prune``'s. Errors (a server that does not answer, a
bad URL, a missing extra, a folder that cannot be read, Ctrl-C) end in one line saying what
to do and a non-zero exit code; ``-v`` logs tracebacks. Empty listings say so on stderr.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
import time
from collections import Counter
from typing import Any, List, Optional

import click
import numpy as np

from hither.errors import HitherError
from hither.plugins.cli import DURATION_SYNTAX, CommandFailure, guard_command, parse_duration
from hither.plugins.interfaces import CacheBackend

from .__about__ import __version__
from .documents import EntrySummary
from .limits import seconds_option

logger = logging.getLogger("hither.cache")

_HEX_RE = re.compile(r"^[0-9a-f]+$")
_MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
class _CacheGroup(click.Group):
    """The ``hither-cache`` group: Ctrl-C and any failure no command turned into a message
    end in one line and a non-zero exit code, never a traceback (``-v`` logs it)."""

    def invoke(self, ctx: click.Context) -> Any:
        return guard_command(lambda: super(_CacheGroup, self).invoke(ctx), passthrough=_CLICK_OWN,
                             as_error=_click_error, log=logger, explain=_known_failure)


#: click's own exceptions (usage errors, --help's exit, Ctrl-C at a prompt): click reports them
_CLICK_OWN = (click.ClickException, click.exceptions.Exit, click.Abort)


def _click_error(failure: CommandFailure) -> click.ClickException:
    error = click.ClickException(failure.message)
    error.exit_code = failure.exit_code  # type: ignore[misc]  # click types it as a class constant
    return error


def _known_failure(exc: Exception) -> Optional[click.ClickException]:
    """hither's errors and the file system's: a message of their own (``_fail``)."""
    return _fail(exc) if isinstance(exc, (HitherError, OSError)) else None


class _Duration(click.ParamType):
    """A duration back from now: finite, and not reaching back before 1970 (no entry is that
    old, and the date would overflow)."""

    name = "duration"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        try:
            seconds = float(value) if isinstance(value, (int, float)) else parse_duration(value)
        except ValueError as exc:  # one line: the option, the text, the syntax
            self.fail(str(exc), param, ctx)
        if not math.isfinite(seconds) or seconds > time.time():
            self.fail(f"{value!r} reaches back before 1970, so no entry is that old: give a "
                      "shorter duration (or leave --older-than out to clear every entry)", param, ctx)
        return seconds


class _Seconds(click.ParamType):
    """Seconds to wait: finite, from 0 to a day (``nan``, ``inf`` or 1e30 would never end)."""

    name = "seconds"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        try:
            seconds = float(value)
        except (ValueError, TypeError):
            self.fail(f"{value!r} is not a number of seconds: give e.g. 10 or 2.5", param, ctx)
        try:  # named as the command line spells it, e.g. --retry-timeout
            return seconds_option(param.opts[0] if param is not None else "value", seconds)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _open_backend(ctx: click.Context) -> CacheBackend:
    """The backend chosen by the group's options (opened on first use, so --help works)."""
    obj = ctx.find_root().obj
    if obj.get("backend") is None:
        path, mongo_url = obj["path"], obj["mongo_url"]
        if (path is None) == (mongo_url is None):
            raise click.UsageError("choose the cache with exactly one of --path FOLDER or "
                                   "--mongo-url URL (with --database NAME)")
        if mongo_url is not None and not mongo_url.startswith(_MONGO_SCHEMES):
            raise click.BadParameter(f"{mongo_url!r} is not a MongoDB URL: give "
                                     "mongodb://HOST[:PORT] (or mongodb+srv://HOST)",
                                     param_hint="'--mongo-url'")
        try:
            if path is not None:
                from .file_backend import FileCacheBackend

                obj["backend"] = FileCacheBackend(path)
            else:
                from hither.models import Database

                from .mongo_backend import MongoCacheBackend

                backend = MongoCacheBackend(
                    Database(mongo_url=mongo_url, database=obj["database"]),
                    collection=obj["collection"], retry_timeout=obj["retry_timeout"], cooldown=0)
                backend.retry_hint = "--retry-timeout SECONDS"
                obj["backend"] = backend
        except (HitherError, OSError) as exc:
            raise _fail(exc) from None
    return obj["backend"]


def _summaries(backend: CacheBackend) -> List[EntrySummary]:
    it = getattr(backend, "iter_summaries", None)
    if it is not None:
        return list(it())
    out = []
    for h in backend.iter_hashes():  # a backend without summaries: read each entry
        e = backend.get(h)
        if e is None:
            out.append(EntrySummary.unreadable(h, "unreadable"))
        else:
            out.append(EntrySummary(**{k: getattr(e, k) for k in EntrySummary.model_fields
                                       if hasattr(e, k)}))
    return out


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "?"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def _fail(exc: Exception) -> "click.ClickException":
    """One line for the user; a file system's own error (e.g. a read-only folder) included."""
    if isinstance(exc, OSError) and not isinstance(exc, HitherError):
        where = f" ({exc.filename})" if exc.filename else ""
        return click.ClickException(f"{exc.strerror or exc}{where}: check that the cache folder "
                                    "exists and that this user can write to it")
    return click.ClickException(str(exc))


@click.group(cls=_CacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--path", type=click.Path(file_okay=False, exists=True), envvar="HITHER_CACHE_PATH",
              help="Folder of a file job cache (hi.JobCache(path=...)). Env: HITHER_CACHE_PATH.")
@click.option("--mongo-url", envvar="HITHER_CACHE_MONGO_URL",
              help="MongoDB URL of a MongoDB job cache. Env: HITHER_CACHE_MONGO_URL.")
@click.option("--database", default="hither", show_default=True, envvar="HITHER_CACHE_DATABASE",
              help="MongoDB database (with --mongo-url).")
@click.option("--collection", default="job_cache", show_default=True, help="MongoDB collection.")
@click.option("--retry-timeout", type=_Seconds(), default=10.0, show_default=True,
              help="Seconds to keep retrying an unreachable MongoDB server.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the cache does (and tracebacks).")
@click.version_option(__version__, prog_name="hither-cache")
@click.pass_context
def main(ctx: click.Context, path: Optional[str], mongo_url: Optional[str], database: str,
         collection: str, retry_timeout: float, verbose: bool) -> None:
    """Look into and clean a hither job cache (a --path folder or a --mongo-url database)."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    ctx.obj = {"path": path, "mongo_url": mongo_url, "database": database,
               "collection": collection, "retry_timeout": retry_timeout, "backend": None}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Number of entries, their size, status and functions."""
    backend = _open_backend(ctx)
    try:
        items = _summaries(backend)
    except (HitherError, OSError) as exc:
        raise _fail(exc) from None
    by_status = Counter("unreadable" if s.problem else s.status.value for s in items)
    by_function = Counter(f"{s.function_name} {s.function_version}" for s in items if not s.problem)
    times = [s.created_at for s in items if s.created_at]
    data = {"cache": backend.describe(), "entries": len(items),
            "bytes": sum(s.size_bytes for s in items), "by_status": dict(by_status),
            "by_function": dict(by_function.most_common()),
            "oldest": min(times) if times else None, "newest": max(times) if times else None}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(data["cache"])
    click.echo(f"entries: {data['entries']}  ({_size(data['bytes'])})")
    if by_status:
        click.echo("status:  " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    if times:
        click.echo(f"oldest:  {_when(min(times))}\nnewest:  {_when(max(times))}")
    if by_function:
        click.echo("functions:")
        for name, n in by_function.most_common(20):
            click.echo(f"  {n:>7}  {name}")
        if len(by_function) > 20:
            click.echo(f"  ... and {len(by_function) - 20} more")


@main.command("ls")
@click.option("--function", "function_name", help="Only entries of this function.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def ls_cmd(ctx: click.Context, function_name: Optional[str], limit: Optional[int], as_json: bool) -> None:
    """List entries, newest first: hash, time, status, function, version, size."""
    backend = _open_backend(ctx)
    try:
        items = _summaries(backend)
    except (HitherError, OSError) as exc:
        raise _fail(exc) from None
    if function_name:
        items = [s for s in items if s.function_name == function_name]
    if not items:  # on stderr: a script reading stdout sees no lines
        of = f" of function {function_name!r}" if function_name else ""
        click.echo(f"no entries{of} in the {backend.describe()}", err=True)
        return
    items.sort(key=lambda s: s.created_at, reverse=True)
    for s in items[:limit] if limit is not None else items:
        if as_json:
            click.echo(s.model_dump_json())
        else:
            status = s.problem or s.status.value
            click.echo(f"{s.job_hash}  {_when(s.created_at)}  {status:<9}  "
                       f"{s.function_name} {s.function_version}  {_size(s.size_bytes)}")


def _resolve(backend: CacheBackend, prefix: str) -> str:
    prefix = prefix.lower()
    if not _HEX_RE.match(prefix):
        raise click.BadParameter(f"{prefix!r} is not a job hash: give the hexadecimal hash "
                                 "(or its first digits) that hither-cache ls shows",
                                 param_hint="JOB_HASH")
    if len(prefix) == 40:
        return prefix
    matches = [h for h in backend.iter_hashes() if h.startswith(prefix)]
    if not matches:
        raise click.ClickException(f"no entry whose hash starts with {prefix!r} in {backend.describe()}")
    if len(matches) > 1:
        raise click.ClickException(f"{len(matches)} entries start with {prefix!r}: give more digits")
    return matches[0]


class _ArrayRepr:
    def __init__(self, a: np.ndarray) -> None:
        self.text = f"array(shape={a.shape}, dtype={a.dtype}: {np.array2string(a.ravel()[:6], threshold=6)}" \
                    + ("...)" if a.size > 6 else ")")

    def __repr__(self) -> str:
        return self.text


def _summarize(v: Any) -> Any:
    """``v`` with arrays shown by shape, dtype and first values."""
    if isinstance(v, np.ndarray):
        return _ArrayRepr(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_summarize(x) for x in v)
    if isinstance(v, dict):
        return {k: _summarize(x) for k, x in v.items()}
    return v


def _show_value(v: Any, limit: int = 2000) -> str:
    text = repr(_summarize(v))
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@main.command()
@click.argument("job_hash")
@click.pass_context
def show(ctx: click.Context, job_hash: str) -> None:
    """Everything recorded for one entry (JOB_HASH may be a unique prefix)."""
    backend = _open_backend(ctx)
    try:
        h = _resolve(backend, job_hash)
        e = backend.get(h)
    except (HitherError, OSError) as exc:
        raise _fail(exc) from None
    if e is None:
        raise click.ClickException(f"no readable entry {h} in {backend.describe()}")
    ri = e.runtime_info
    lines = [f"job hash:   {e.job_hash}", f"function:   {e.function_name} {e.function_version}",
             f"status:     {e.status.value}", f"created:    {_when(e.created_at)}",
             f"code hash:  {e.code_hash or '-'}", f"hither:     {e.hither_version or '-'}",
             f"ran on:     {ri.host or '?'} (pid {ri.pid}, {ri.handler or '?'} handler)"]
    if ri.elapsed is not None:
        lines.append(f"elapsed:    {ri.elapsed:.3f} s")
    click.echo("\n".join(lines))
    if e.error is not None:
        click.echo(f"error:      {e.error.type_module}.{e.error.type_name}: {e.error.message}")
        if e.error.traceback:
            click.echo("--- traceback ---\n" + e.error.traceback.rstrip())
    else:
        click.echo("result:     " + _show_value(e.result))
    for name, text in (("stdout", ri.stdout), ("stderr", ri.stderr)):
        if text:
            click.echo(f"--- {name} ---\n{text.rstrip()}")


@main.command()
@click.option("--older-than", type=_Duration(), default=None, metavar="DURATION",
              help=f"Only entries created more than DURATION ago. DURATION is {DURATION_SYNTAX}.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def clear(ctx: click.Context, older_than: Optional[float], yes: bool) -> None:
    """Delete entries (all of them, or those older than --older-than)."""
    backend = _open_backend(ctx)
    cutoff = None if older_than is None else time.time() - older_than
    what = "every entry" if cutoff is None else f"entries created before {_when(cutoff)}"
    if not yes:
        click.confirm(f"Delete {what} of the {backend.describe()}?", abort=True)
    try:
        n = backend.clear(older_than=cutoff)
    except (HitherError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(f"deleted {n} entr{'y' if n == 1 else 'ies'}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="hither-cache")
