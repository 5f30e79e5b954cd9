"""What the ``hither-store`` commands share (``cli`` and ``prune``): the store the command
line names, opened once on first use, and turning failures into one-line error messages."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Optional, TypeVar

import click

from hither.errors import HitherError

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
    obj = click.get_current_context().obj
    url = obj.url or os.environ.get(ENV_URL) or f"${ENV_URL}"
    store = obj.opened
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
