"""The job directory as the runtime sees it: its file names, writing outputs atomically
(``write_json_atomic``), keeping the files a job makes or returns under ``outputs/``, and
unpacking its code bundle. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import io
import json
import os
import zipfile

from .hashing import copy_file_hashing, sha1_of_bytes
from .wire import TAG

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Callable, Dict, Optional, Tuple

RESULT, ERROR, RUNTIME = "result.json", "error.json", "runtime.json"
RUNNER = "runner.py"  # the runtime itself, in every job directory that is run

#: ``--no-fsync`` (``JobServerLauncher``'s: its caller reads the outputs on this machine as
#: soon as the job ends, and a crash of the machine ends the server and its jobs too, which
#: are then rerun); ~0.7 ms of CPU per job, more under disk load
FSYNC = [True]


def write_json_atomic(path: str, data: Any, fsync: bool = True) -> None:
    """Write ``data`` as JSON at ``path`` so that a reader sees the old file or all of the
    new one, never a part: it goes to ``<path>.tmp<pid>`` beside it (same file system),
    which is then renamed over ``path``; on failure (disk full) the temporary file is
    removed and the error raised. ``fsync``: the content reaches the disk before the
    rename, so a crash of the machine cannot leave an empty file either. Public as
    ``hither.outside.jobdir.write_json_atomic``; e.g. a pilot failing a job it will not run::

        write_json_atomic(os.path.join(job_dir, ERROR), error_dict(exc))
    """
    tmp = path + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "w") as f:
            json.dump(data, f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_output(path: str, data: Any) -> None:
    """The runner's own outputs: fsynced unless its job server runs with ``--no-fsync``."""
    write_json_atomic(path, data, fsync=FSYNC[0])




def keep_output(job_dir: str, src: str, name: str) -> Tuple[str, str]:
    """Copy ``src`` to ``outputs/<sha1>/<name>`` in the job directory: (its path, its URI)."""
    tmp = os.path.join(job_dir, "outputs", ".partial-%d-%s" % (os.getpid(), os.urandom(6).hex()))
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    digest = copy_file_hashing(src, tmp)
    os.makedirs(os.path.join(job_dir, "outputs", digest), exist_ok=True)
    dest = os.path.join(job_dir, "outputs", digest, name)
    os.replace(tmp, dest)
    return dest, "sha1://%s/%s" % (digest, name)


def returned_file_encoder(job_dir: str) -> Callable[[Any], Dict[str, Any]]:
    """Encodes each File a job returns as a copy in ``outputs/<sha1>/<name>`` of the job
    directory, with its sha1: the caller gets this content, wherever the job ran and
    whatever happens to the original path afterwards."""

    def encode(v: Any) -> Dict[str, Any]:
        try:
            src = os.fspath(v)
        except Exception:  # noqa: BLE001 - e.g. stored content that is not local here
            src = None
        if src is None or not os.path.isfile(src):
            uri = getattr(v, "_uri", None)
            if uri:
                return {TAG: "file", "uri": uri}
            raise FileNotFoundError("the job returned a hi.File for %r, but no such file exists when "
                                    "the job ends (was it written in a temporary folder that is "
                                    "already gone?)" % (getattr(v, "path", None) or src,))
        name = getattr(v, "name", None) or os.path.basename(src)
        rel = os.path.relpath(src, job_dir).replace(os.sep, "/")
        uri = getattr(v, "_uri", None)
        if uri and rel.startswith("outputs/") and rel == "outputs/%s/%s" % (uri[7:47], name):
            # kept there when it was made (a stand-in File): the reader checks its sha1
            return {TAG: "file", "uri": uri, "local": rel, "sha1": uri[7:47]}
        dest, uri = keep_output(job_dir, src, name)
        return {TAG: "file", "uri": uri, "local": os.path.relpath(dest, job_dir).replace(os.sep, "/"),
                "sha1": uri[7:47]}

    return encode


def code_dir(job_dir: str, code_cache: Optional[str], bundle: Optional[str] = None) -> str:
    """Where the job's code bundle is unpacked: ``code/`` in the job directory, or, with a
    ``code_cache`` folder (the job server's), ``<code_cache>/<sha1 of code.zip>``, unpacked
    by the first job of that bundle and reused by the next ones (and their compiled
    ``__pycache__``): ~1.5 ms less per job. Jobs of one bundle then share its folder, which
    they must not write to (a job's own files belong in its working directory). ``bundle``:
    that sha1 when the caller has it (the server that chose a process for the bundle), so
    an unpacked bundle is not read again."""
    zip_path = os.path.join(job_dir, "code.zip")
    if not code_cache:
        folder = os.path.join(job_dir, "code")
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(folder)
        return folder
    data = None
    if bundle is None:
        data = read_bytes(zip_path)
        bundle = sha1_of_bytes(data)
    folder = os.path.join(code_cache, bundle)
    if not os.path.isdir(folder):  # unpacked aside, then renamed: never seen half-written
        if data is None:
            data = read_bytes(zip_path)
        tmp = "%s.partial-%d" % (folder, os.getpid())
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            z.extractall(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another job of this bundle was first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()

