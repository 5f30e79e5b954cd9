"""Reclaiming space: ``prune`` removes stored content not used for a while, or the least
recently used content beyond a size budget (the ``hither-store prune`` command).

Each ``hi.File(path)`` keeps a copy of the file's content in the local store; making a File
of content already stored marks that blob as just used (its modification time). Pruning
by age or size therefore drops content no recent program has made a File of. A job-cache
entry whose result refers to a pruned file is treated as a miss (the job runs again);
a File object still held by a running program can no longer be read, so prune between
runs, or with an age well above the length of a run. Example::

    from hither_store import Store
    from hither_store.prune import prune

    report = prune(Store(), older_than=30 * 86400)            # not used for 30 days
    report = prune(Store(), max_bytes=50 * 2**30, dry_run=True)
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

import click

from hither.content.layout import BlobFolder

from .cli_support import DURATION_HELP, Duration, StoreContext, human_size, run_reporting
from .errors import StoreError

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

logger = logging.getLogger("hither.store")

#: a partial write under tmp/ older than this was left by a process that died mid-write
PARTIAL_MAX_AGE = 24 * 3600.0


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed (or, with ``dry_run``, would remove) and what is left."""

    folder: str
    removed: int
    freed_bytes: int
    kept: int
    kept_bytes: int
    partials: int


def _blobs_with_times(blobs: BlobFolder) -> List[Tuple[float, str, int]]:
    out = []
    for digest, _size in blobs.iter_blobs():
        try:
            st = os.stat(blobs.path(digest))
        except FileNotFoundError:
            continue
        out.append((st.st_mtime, digest, st.st_size))
    return out


def prune_folder(blobs: BlobFolder, older_than: Optional[float] = None,
                 max_bytes: Optional[int] = None, dry_run: bool = False,
                 now: Optional[float] = None) -> PruneReport:
    """Remove blobs of a local folder last used more than ``older_than`` seconds ago, then
    the least recently used until at most ``max_bytes`` remain; also partial writes left
    in ``tmp/`` by processes that died. Nothing is removed with ``dry_run``."""
    if older_than is None and max_bytes is None:
        raise StoreError("prune needs a limit: an age (older_than) and/or a size (max_bytes)")
    now = time.time() if now is None else now
    entries = sorted(_blobs_with_times(blobs))  # least recently used first
    total = sum(size for _t, _d, size in entries)
    removed = freed = 0
    for mtime, digest, size in entries:
        too_old = older_than is not None and now - mtime > older_than
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            continue
        if not dry_run:
            try:  # used since we listed it (a new hi.File of this content): keep it
                if os.stat(blobs.path(digest)).st_mtime != mtime:
                    continue
            except FileNotFoundError:
                continue
            if not blobs.remove(digest):
                continue
        removed += 1
        freed += size
        total -= size
    partials = 0
    for path, mtime in blobs.iter_partials():
        if now - mtime > PARTIAL_MAX_AGE:
            if not dry_run:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
            partials += 1
    logger.debug("pruned %s: %d blobs (%d bytes), %d partial writes", blobs.root, removed, freed, partials)
    return PruneReport(blobs.root, removed, freed, len(entries) - removed, total, partials)


def prune(store: "Store", older_than: Optional[float] = None, max_bytes: Optional[int] = None,
          dry_run: bool = False) -> PruneReport:
    """``prune_folder`` on a store's local folder: the store itself when it is local, else
    its local cache of content fetched from the remote store (which refills on demand;
    the remote objects are left alone)."""
    return prune_folder(store.local_blobs, older_than, max_bytes, dry_run)


_SIZES = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes in ``50G``, ``500M``, ``1.5T``, ``2048`` (binary units; ``GiB``/``GB`` alike)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"{text!r} is not a size: give a number and a unit, e.g. 50G, 500M")
    return int(float(m.group(1)) * _SIZES[m.group(2)])


@click.command("prune")
@click.option("--older-than", "older_than", type=Duration(), default=None, metavar="DURATION",
              help="Remove content not used for DURATION (0 removes everything). " + DURATION_HELP)
@click.option("--max-size", "max_size", metavar="SIZE", default=None,
              help="Then remove the least recently used content until at most SIZE remains (50G, 500M).")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@click.pass_obj
def prune_command(obj: StoreContext, older_than: Optional[float], max_size: Optional[str], dry_run: bool) -> None:
    """Reclaim disk space: remove stored content that was not used recently.

    "Used" means stored, or made into a hi.File again. For a remote store (s3://...) this
    cleans its local cache only. Job-cache entries whose files were removed run again.
    """
    if older_than is None and max_size is None:
        raise click.UsageError("give --older-than DURATION and/or --max-size SIZE")
    try:
        size = parse_size(max_size) if max_size is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--max-size'") from None
    store = obj.store
    report = run_reporting(prune, store, older_than, size, dry_run)
    verb = "would remove" if dry_run else "removed"
    where = report.folder if store.is_local else f"{report.folder} (local cache of {store.url})"
    click.echo(f"{where}: {verb} {report.removed} blobs ({human_size(report.freed_bytes)}) and "
               f"{report.partials} partial writes; {report.kept} blobs ({human_size(report.kept_bytes)}) kept")
