"""What the ``hither-store`` commands share (``cli`` and ``prune``): the store the command
line names, opened once on first use, turning failures (and Ctrl-C) into one-line error
messages, and the ``--older-than`` duration type (``hither.plugins.cli.parse_duration``)."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Optional, TypeVar

import click

from hither.errors import HitherError
from hither.plugins.cli import DURATION_SYNTAX, CommandFailure, guard_command, parse_duration

from .locations import ENV_URL

logger = logging.getLogger("hither.store")

T = TypeVar("T")


class StoreContext:
    """The click context object: the store given by ``--url``/``--storage-options``."""

    def __init__(self, url: Optional[str], options: Optional[Dict[str, Any]]) -> None:
        self.url, self.options = url, options
        self.opened: Optional[Any] = None  # the Store, once opened

    @property
    def store(self) -> Any:
        """The store, opened on first use (a clear error message if it cannot be)."""
        if self.opened is None:
            from .store import Store

            self.opened = run_reporting(lambda: Store(self.url, storage_options=self.options))
        return self.opened


class Duration(click.ParamType):
    """A duration in the syntax of every hither command line (``hither.plugins.cli``)."""

    name = "duration"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: the --help text of a duration option
DURATION_HELP = f"DURATION is {DURATION_SYNTAX}."


class StoreGroup(click.Group):
    """The ``hither-store`` group: Ctrl-C and any failure no command turned into a message
    end in one line and a non-zero exit code, never a traceback (``-v`` logs it)."""

    def invoke(self, ctx: click.Context) -> Any:
        return guard_command(lambda: super(StoreGroup, self).invoke(ctx), passthrough=_CLICK_OWN,
                             as_error=_click_error, log=logger,
                             interrupted_note="stored content is never half-written")


#: click's own exceptions (usage errors, --help's exit, Ctrl-C at a prompt): click reports them
_CLICK_OWN = (click.ClickException, click.exceptions.Exit, click.Abort)


def _click_error(failure: CommandFailure) -> click.ClickException:
    error = click.ClickException(failure.message)
    error.exit_code = failure.exit_code  # type: ignore[misc]  # click types it as a class constant
    return error


def run_reporting(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``; any failure becomes a ``click.ClickException`` saying what to do."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - every failure of the store is an error message
        raise error_for(exc) from exc


def error_for(exc: Exception) -> click.ClickException:
    """The message for a failure: hither's own errors as they are, others with a hint."""
    if isinstance(exc, HitherError):
        return click.ClickException(str(exc))
    # the file system's own error, e.g. an S3 endpoint that does not answer
    logger.debug("store operation failed", exc_info=exc)
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(StoreContext) if ctx is not None else None
    url = (obj.url if obj is not None else None) or os.environ.get(ENV_URL) or f"${ENV_URL}"
    store = obj.opened if obj is not None else None
    if (store.is_local if store is not None else "://" not in url and "::" not in url):
        return click.ClickException(
            f"{type(exc).__name__}: {exc}. Check that the folder {url} exists and is readable "
            "and writable; -v shows the traceback")
    return click.ClickException(
        f"{type(exc).__name__}: {exc}. Check that the store {url} is reachable and that "
        "--storage-options (endpoint, credentials) are right; -v shows the traceback")


def human_size(n: float) -> str:
    """A byte count in words: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
