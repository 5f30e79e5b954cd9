"""What the ``hither-remote`` commands share: the bus options and the bus they open, the
``--config`` file (unknown keys refused), durations, and failures turned into one or two
lines that say what went wrong and what to do (never a traceback; ``-v`` logs it).

A bus that does not answer within ``--connect-timeout`` seconds, a ``--mongo-url`` that is
not a MongoDB URL, a missing plugin or a bad store URL end the command with exit code 1; Ctrl-C
with ``hither.plugins.cli.EXIT_INTERRUPTED``."""
from __future__ import annotations

import contextlib
import difflib
import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Set

import click

from hither.errors import HitherError
from hither.plugins.cli import DURATION_SYNTAX, command_failure, parse_duration

if TYPE_CHECKING:  # pragma: no cover
    from .bus import Bus

logger = logging.getLogger("hither_remote.cli")

MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
#: the --log-level choices of ``serve``
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: config keys read by a callback rather than an option (``slurm_cli``: the older flag)
EXTRA_CONFIG_KEYS = {"serve": {"slurm_local_pilots"}}


def fail(message: str, exit_code: int = 1) -> click.ClickException:
    """A failure of the command: ``Error: message`` on stderr and ``exit_code``."""
    error = click.ClickException(message)
    error.exit_code = exit_code  # type: ignore[misc]  # click types it as a class constant
    return error


class RemoteGroup(click.Group):
    """The ``hither-remote`` group: any failure no command turned into a message ends in one
    or two lines and a non-zero exit code (``-v`` logs the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - every failure: a message
            logger.debug("hither-remote failed", exc_info=exc)
            raise _message(exc) from None


def _message(exc: BaseException) -> click.ClickException:
    """The error ``RemoteGroup`` shows for ``exc``."""
    import pymongo.errors  # here, not before the command: Ctrl-C at any time is one line

    if isinstance(exc, HitherError):  # a missing plugin, a bad store URL, a bad option value
        return fail(str(exc))
    if isinstance(exc, pymongo.errors.PyMongoError):
        from .outage import describe

        return fail(f"the job bus failed ({describe(exc)}); check --mongo-url and --database")
    failure = command_failure(exc)
    assert failure is not None  # KeyboardInterrupt and Exception are failures
    return fail(failure.message, failure.exit_code)


def check_mongo_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--mongo-url``: a MongoDB URL, or a one-line error saying what one looks like."""
    if not value.startswith(MONGO_SCHEMES):
        raise fail(f"--mongo-url {shown_url(value)!r} is not a MongoDB URL: give mongodb://HOST[:PORT] "
                   "(or mongodb+srv://HOST), e.g. mongodb://127.0.0.1:27017")
    return value


def shown_url(url: str) -> str:
    """``url`` without its password, for a message."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


@contextlib.contextmanager
def open_bus(mongo_url: str, database: str, connect_timeout: float) -> Iterator["Bus"]:
    """The job bus of the command's options, closed afterwards; a bus that does not answer
    within ``connect_timeout`` seconds ends the command in two lines saying what to do."""
    import pymongo.errors

    from hither.models import Database

    from .bus import Bus
    from .outage import describe

    try:
        bus = Bus(Database(mongo_url=mongo_url, database=database),
                  server_selection_timeout_ms=max(1, int(connect_timeout * 1000)))
    except (pymongo.errors.ConfigurationError, ValueError) as exc:  # InvalidURI and kin
        raise fail(f"--mongo-url {shown_url(mongo_url)!r} is not a usable MongoDB URL ({describe(exc)}): "
                   "give mongodb://HOST[:PORT]") from None
    try:
        yield bus
    except (pymongo.errors.ServerSelectionTimeoutError, pymongo.errors.ConnectionFailure) as exc:
        logger.debug("the job bus does not answer", exc_info=exc)
        raise fail(f"no MongoDB answers at {shown_url(mongo_url)} within {connect_timeout:g} s ({describe(exc)}).\n"
                   "Start it there, or give the right --mongo-url (or $HITHER_REMOTE_MONGO_URL); "
                   "--connect-timeout waits longer") from None
    finally:
        bus.close()


_MONGO_URL = click.option("--mongo-url", show_envvar=True, envvar="HITHER_REMOTE_MONGO_URL",
                          default="mongodb://127.0.0.1:27017", show_default=True, callback=check_mongo_url,
                          help="MongoDB holding the job bus")
_DATABASE = click.option("--database", show_envvar=True, envvar="HITHER_REMOTE_DATABASE", default="hither",
                         show_default=True, help="database of the job bus")
_CONNECT_TIMEOUT = click.option("--connect-timeout", show_envvar=True, envvar="HITHER_REMOTE_CONNECT_TIMEOUT",
                                type=click.FloatRange(min=0.1, max=600), default=5.0, show_default=True,
                                help="seconds to wait for the bus to answer before giving up")


def serve_bus_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--mongo-url`` and ``--database``: the bus ``serve`` serves (it waits out outages)."""
    return _MONGO_URL(_DATABASE(fn))


def bus_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--mongo-url``, ``--database`` and ``--connect-timeout``: the bus a command reads."""
    return _MONGO_URL(_DATABASE(_CONNECT_TIMEOUT(fn)))


def duration(value: object, param: Optional[click.Parameter] = None) -> float:
    """Seconds of a duration option (``hither.plugins.cli`` syntax; a number from a config file)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


#: the --help text of the duration options
DURATION_HELP = f"(DURATION: {DURATION_SYNTAX})"


def _known_keys(group: click.Group, ctx: click.Context) -> Dict[str, Set[str]]:
    """Command name -> the parameter names a config file may set for it."""
    out: Dict[str, Set[str]] = {}
    for name, cmd in group.commands.items():
        names = {p.name for p in cmd.get_params(ctx) if p.name and p.name != "help"}
        out[name] = names | EXTRA_CONFIG_KEYS.get(name, set())
    return out


def _unknown(key: str, known: Set[str], where: str, path: str) -> click.ClickException:
    near = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {near[0].replace('_', '-')}?)" if near else ""
    if key.startswith("slurm_") and not any(k.startswith("slurm_") for k in known - {"slurm_local_pilots"}):
        hint = " (an option of --handler slurm, which needs hither-slurm: pip install hither-slurm)"
    return fail(f"config file {path}: unknown key {key.replace('_', '-')!r}{where}{hint}; the keys are "
                "the options without the leading -- (see hither-remote COMMAND --help)")


def load_config(ctx: click.Context, param: click.Parameter, path: Optional[str]) -> None:
    """Option defaults from a TOML file: top-level keys for every command, a ``[serve]``
    (``[status]``, ...) table for one; command-line options and env vars still win. A key
    or table no command knows is refused, naming it."""
    if not path:
        return
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the config file {path}: {exc}") from None
    if "secret" in data or any(isinstance(v, dict) and "secret" in v for v in data.values()):
        raise fail(f"{path}: the secret does not belong in the config file; use $HITHER_REMOTE_SECRET "
                   "or secret-file = \"PATH\"")
    assert isinstance(ctx.command, click.Group)
    known = _known_keys(ctx.command, ctx)
    everywhere = set().union(*known.values())
    common = {k.replace("-", "_"): v for k, v in data.items() if not isinstance(v, dict)}
    for key in common:
        if key not in everywhere:
            raise _unknown(key, everywhere, "", path)
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        if name not in known:
            raise fail(f"config file {path}: unknown table [{name}]; tables are named after the "
                       f"commands: {', '.join(sorted(known))}")
        for key in table:
            if key.replace("-", "_") not in known[name]:
                raise _unknown(key.replace("-", "_"), known[name], f" in [{name}]", path)
    ctx.default_map = {name: {**{k: v for k, v in common.items() if k in known[name]},
                              **{k.replace("-", "_"): v for k, v in data.get(name, {}).items()}}
                       for name in known}
