"""The ``hither-store`` command: put, get, verify and count content in a store.

    hither-store put data.csv                   # prints sha1://<40 hex>/data.csv
    hither-store get sha1://…/data.csv out/     # copies the content to out/data.csv
    hither-store --url s3://bucket/hither verify   # re-hashes every blob; exit code 1 if one is bad
    hither-store stats
    hither-store prune --older-than 30d         # reclaim space: drop content not used for 30 days

Errors (a store that does not answer, a bad URL, a folder that cannot be read or written,
Ctrl-C) end in one line saying what to do and a non-zero exit code; ``-v`` logs tracebacks.
Empty listings say so on stderr (stdout stays parseable).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import sys
import uuid
from typing import Any, Dict, Optional, Tuple

import click

from hither.content.hashing import parse_uri
from hither.content.layout import kind_of

from .cli_support import StoreContext, StoreGroup, error_for, human_size, run_reporting
from .errors import BlobNotFoundError, StoreError
from .locations import ENV_OPTIONS, ENV_URL, parse_storage_options
from .prune import prune_command


def _parse_options(raw: Optional[str]) -> Optional[Dict[str, Any]]:
    if raw is None:
        return None
    try:
        return parse_storage_options(raw, "the value")
    except StoreError as exc:
        raise click.BadParameter(str(exc), param_hint="--storage-options") from None


@click.group(cls=StoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", default=None,
              help=f"Store URL: a folder or an fsspec URL (memory://, s3://bucket/prefix, ...). "
                   f"Default: ${ENV_URL}, else ~/.cache/hither/store.")
@click.option("--storage-options", metavar="JSON", default=None,
              help=f"fsspec options as a JSON object, e.g. "
                   f"'{{\"client_kwargs\": {{\"endpoint_url\": \"http://127.0.0.1:5555\"}}}}'. "
                   f"Default for ${ENV_URL}: ${ENV_OPTIONS}.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the store does.")
@click.version_option(package_name="hither-store")
@click.pass_context
def main(ctx: click.Context, url: Optional[str], storage_options: Optional[str], verbose: bool) -> None:
    """Content-addressed store of hither: files and arrays by sha1 on any fsspec file system."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    ctx.obj = StoreContext(url, _parse_options(storage_options))


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default=None, help="File name in the URI (default: the file's own; one FILE only).")
@click.pass_obj
def put(obj: StoreContext, files: Tuple[str, ...], name: Optional[str]) -> None:
    """Store FILES; print one sha1:// URI per file."""
    if name is not None and len(files) != 1:
        raise click.UsageError("--name needs exactly one FILE")
    for path in files:
        click.echo(run_reporting(obj.store.put_file, path, name))


@main.command()
@click.argument("uri")
@click.argument("dest", required=False, type=click.Path())
@click.option("--force-special", is_flag=True,
              help="Write the content into DEST even when it is a FIFO, a device or a socket "
                   "(written into it, never replacing it).")
@click.pass_obj
def get(obj: StoreContext, uri: str, dest: Optional[str], force_special: bool) -> None:
    """Print a local path holding URI's content, or copy it to DEST (a file or a folder).

    DEST is never replaced by something else: a symlink stays and its target gets the
    content; a FIFO or a device is refused unless --force-special says to write into it."""
    src = run_reporting(obj.store.get_path, uri)
    if dest is None:
        click.echo(src)
        return
    if os.path.isdir(dest):
        digest, name = parse_uri(uri)
        dest = os.path.join(dest, name or digest)
    # write through symlinks: the link the user named stays, its target gets the content
    target = os.path.realpath(dest)
    try:
        st: Optional[os.stat_result] = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise click.ClickException(f"cannot write {dest}: {exc.strerror or exc}") from exc
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise click.ClickException(f"cannot write {dest}: {target} is a directory")
    store_root = obj.store.local_blobs.root + os.sep
    if target.startswith(store_root):
        raise click.ClickException(f"cannot write {dest}: it leads into the store's own folder "
                                   f"{store_root}, whose blobs are never written by get")
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not force_special:
            raise click.ClickException(
                f"{dest} is a {kind_of(st.st_mode)}: hither-store get does not write into it "
                "or replace it; pass --force-special to write the content into it, or give "
                "the path of a file or folder")
        _write_into(src, target, dest)
    else:
        _replace_atomically(src, target, st, dest)
    click.echo(dest)


def _write_into(src: str, target: str, dest: str) -> None:
    """Write the content into an existing special file (no create, no truncate, no rename)."""
    try:
        fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        with open(fd, "wb", buffering=0) as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    except OSError as exc:
        raise click.ClickException(f"cannot write into {dest}: {exc.strerror or exc}") from exc


def _replace_atomically(src: str, target: str, st: Optional[os.stat_result], dest: str) -> None:
    """Copy next to ``target``, then rename: it is never seen half-written. An existing file
    keeps its permission bits."""
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.part")
    try:
        shutil.copyfile(src, tmp)
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
    except OSError as exc:
        raise click.ClickException(f"cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@main.command()
@click.argument("uris", nargs=-1)
@click.option("--remove-bad", is_flag=True, help="Delete blobs whose content does not match their sha1.")
@click.pass_obj
def verify(obj: StoreContext, uris: Tuple[str, ...], remove_bad: bool) -> None:
    """Re-hash URIS (default: every blob in the store); exit code 1 if any is bad or missing."""
    store = obj.store
    if not uris:
        uris = tuple(f"sha1://{digest}" for digest, _size in run_reporting(lambda: list(store.iter_blobs())))
        if not uris:
            click.echo(f"the store {store.describe()} holds no content: nothing to verify", err=True)
    ok = bad = missing = 0
    for uri in uris:
        try:
            good = store.verify(uri)
        except BlobNotFoundError:
            missing += 1
            click.echo(f"MISSING {uri}")
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed URI or a store that is down
            raise error_for(exc) from exc
        if good:
            ok += 1
            click.echo(f"ok {uri}")
        else:
            bad += 1
            removed = remove_bad and store.remove(uri)
            click.echo(f"BAD {uri}: its content does not match its sha1" + (" (removed)" if removed else ""))
    click.echo(f"{ok} ok, {bad} bad, {missing} missing")
    if bad and not remove_bad:
        click.echo(f"remove bad blobs with: hither-store --url {store.url} verify --remove-bad, "
                   "then put their content again", err=True)
    if bad or missing:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def stats(obj: StoreContext, as_json: bool) -> None:
    """Print the number of blobs in the store and their total size."""
    store = obj.store
    st = run_reporting(store.stats)
    if as_json:
        click.echo(json.dumps({"url": store.url, "count": st.count, "bytes": st.bytes}))
    else:
        click.echo(f"store: {store.describe()}\nblobs: {st.count}\nbytes: {st.bytes} ({human_size(st.bytes)})")


main.add_command(prune_command)

if __name__ == "__main__":  # pragma: no cover
    main()
