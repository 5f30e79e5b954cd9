"""Moving values between this process and a local worker process.

Values are pickled (protocol 5); buffers of large arrays go out-of-band through files in
shared memory (``/dev/shm``, or the folder ``$HITHER_SHM_DIR`` names): one copy in, a
copy-on-write memory map out (no copy). Small buffers stay inside the pickle. Arrays arrive with exactly the dtype they left with:
numpy's pickling drops the byte order of a datetime or timedelta dtype (``>M8[ns]`` would
come back ``<M8[ns]``) and of any strided (non-contiguous) array, so those travel as an
integer view of their bytes plus the dtype, or as a contiguous copy.

A buffer file is named ``hither-<owner pid>-<random>.buf``; the owner is the program whose
handler reads and removes it (for a worker's result, the worker's parent). Files of owners
that died (killed before cleaning up) are removed by ``sweep_dead_buffers`` the next time a
handler starts. Values that refer to classes of the ``__main__`` script (which a worker
cannot import) are pickled with cloudpickle, which carries those classes by value.
"""
from __future__ import annotations

import logging
import mmap
import os
import pickle
import re
import sys
import tempfile
import uuid
from typing import Any, List, Optional, Tuple

from hither.runtime.processes import pid_exists

logger = logging.getLogger("hither.local.transfer")

#: arrays at least this large go through shared memory instead of the pipe
SHM_THRESHOLD = int(os.environ.get("HITHER_SHM_THRESHOLD", 1 << 20))


SHM_DIR_ENV = "HITHER_SHM_DIR"
_warned = [False]


def _usable(d: str) -> bool:
    return os.path.isdir(d) and os.access(d, os.W_OK)


def _shm_dir() -> str:
    """Where big buffers go: ``$HITHER_SHM_DIR`` if it is a writable folder, else /dev/shm
    (memory), else the temporary folder. Workers inherit the variable. A set folder that
    cannot be used is named in one warning per program (its workers do not repeat it)."""
    wanted = os.environ.get(SHM_DIR_ENV)
    if wanted and _usable(wanted):
        return wanted
    fallback = "/dev/shm" if _usable("/dev/shm") else tempfile.gettempdir()
    if wanted and not _warned[0] and os.environ.get("HITHER_IN_WORKER") != "1":
        _warned[0] = True
        why = ("does not exist" if not os.path.exists(wanted) else
               "is not a folder" if not os.path.isdir(wanted) else "is not writable")
        logger.warning("%s=%s %s; large arrays go through %s instead (make it a writable "
                       "folder, or unset it)", SHM_DIR_ENV, wanted, why, fallback)
    return fallback


SHM_DIR = _shm_dir()


def _has_room(nbytes: int) -> bool:
    try:
        st = os.statvfs(SHM_DIR)
        return st.f_bavail * st.f_frsize > 2 * nbytes
    except OSError:
        return False


def _as_is(value: Any) -> Any:
    return value


def _with_dtype(raw: Any, dtype: str) -> Any:
    """Unpickling side of ``_keep_exact``: the integer view seen as its own dtype."""
    return raw.view(dtype)


def _keep_exact(obj: Any) -> Any:
    """``reducer_override`` of the picklers below, for what numpy's own pickling changes.

    - Arrays whose dtype is not in native byte order (numpy scalars always are), which it
      would make native: a strided array (neither C- nor F-contiguous) goes as a
      contiguous copy, and an array of datetimes or timedeltas as its bytes viewed as
      integers of that byte order plus its dtype string.
    - ``np.str_`` and ``np.bytes_`` scalars, which it pickles as a NUL-padded buffer and so
      loses their trailing NULs (``np.str_("a\\0")`` came back as ``"a"``): they go as
      their Python ``str``/``bytes``.

    Everything else is pickled the usual way."""
    np = sys.modules.get("numpy")  # a numpy value here means numpy is loaded
    if np is None:
        return NotImplemented
    if isinstance(obj, np.str_):
        return np.str_, (str.__str__(obj),)
    if isinstance(obj, np.bytes_):
        return np.bytes_, (bytes(obj),)
    if not isinstance(obj, np.ndarray) or obj.dtype.isnative:
        return NotImplemented
    if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
        return _as_is, (np.ascontiguousarray(obj),)
    if obj.dtype.kind in "mM":
        return _with_dtype, (np.asarray(obj).view(obj.dtype.byteorder + "i8"), obj.dtype.str)
    return NotImplemented


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        return _keep_exact(obj)


def _pickle(value: Any, by_value: bool, out_of_band: Any) -> bytes:
    import io

    f = io.BytesIO()
    if by_value:
        import cloudpickle

        class _ByValue(cloudpickle.CloudPickler):
            def reducer_override(self, obj: Any) -> Any:
                kept = _keep_exact(obj)
                return super().reducer_override(obj) if kept is NotImplemented else kept

        _ByValue(f, protocol=5, buffer_callback=out_of_band).dump(value)
    else:
        _Pickler(f, protocol=5, buffer_callback=out_of_band).dump(value)
    return f.getvalue()


_BUFFER_NAME = re.compile(r"hither-(\d+)-[0-9a-f]{32}\.buf\Z")


def dumps(value: Any, owner: Optional[int] = None) -> Tuple[bytes, List[str]]:
    """Pickle ``value``; returns (pickle bytes, paths of out-of-band buffer files).
    ``owner``: the pid that will remove the buffer files (default: this process)."""
    paths: List[str] = []
    prefix = f"hither-{os.getpid() if owner is None else owner}-"

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        raw = buf.raw()
        if raw.nbytes < SHM_THRESHOLD or not _has_room(raw.nbytes):
            return True  # keep in-band
        path = os.path.join(SHM_DIR, f"{prefix}{uuid.uuid4().hex}.buf")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            view = memoryview(raw)
            written = 0
            while written < raw.nbytes:
                written += os.write(fd, view[written:written + (1 << 30)])
        finally:
            os.close(fd)
        paths.append(path)
        return False

    try:
        try:
            data = _pickle(value, False, out_of_band)
            by_value = b"__main__" in data  # a class of the main script: the other side lacks it
        except (pickle.PicklingError, AttributeError):
            by_value = True  # e.g. a worker returning an instance of such a class
        if by_value:
            discard(paths)
            paths.clear()
            data = _pickle(value, True, out_of_band)
    except BaseException:
        discard(paths)
        raise
    return data, paths


def loads(data: bytes, paths: List[str], unlink: bool) -> Any:
    """Unpickle, mapping out-of-band buffers copy-on-write (writable, no copy up front)."""
    buffers = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            buffers.append(mmap.mmap(fd, size, access=mmap.ACCESS_COPY) if size else b"")
        finally:
            os.close(fd)
        if unlink:
            _unlink(path)
    return pickle.loads(data, buffers=buffers)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def discard(paths: List[str]) -> None:
    for p in paths:
        _unlink(p)


def sweep_dead_buffers(directory: Optional[str] = None) -> List[str]:
    """Remove buffer files whose owner process no longer exists; returns their paths."""
    d = directory or SHM_DIR
    swept: List[str] = []
    try:
        names = os.listdir(d)
    except OSError:
        return swept
    for name in names:
        m = _BUFFER_NAME.match(name)
        if m is None or pid_exists(int(m.group(1))):
            continue
        path = os.path.join(d, name)
        _unlink(path)
        swept.append(path)
    return swept
