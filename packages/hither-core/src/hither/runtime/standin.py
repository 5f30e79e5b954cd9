"""The stand-in ``hither`` module: where hither is not installed (a bare container image),
``import hither as hi`` in a job's code still works: the decorators only mark the function and
``hi.File`` is a path-based ``_StandInFile``. Stdlib-only, Python >= 3.8 (part of the shipped
runtime).
"""
from __future__ import annotations

import os
import sys
import types

from .jobdir import keep_output

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, List, Optional

keep_dir: List[Optional[str]] = [None]


class _StandInFile(object):
    """``hi.File`` where hither is not installed (inside a bare container image). As with
    ``hi.File``, the content of a File made by the job is kept when it is made (in the job
    directory's ``outputs/``), so it survives a temporary folder removed before the job ends."""

    def __init__(self, path: Optional[str] = None, uri: Optional[str] = None) -> None:
        self.path: Any = os.path.abspath(path) if path is not None else None
        self._uri: Any = uri
        if self.path is not None and uri is None and keep_dir[0] is not None:
            if os.path.isdir(self.path):
                raise IsADirectoryError("hi.File(%r) is a directory: a hi.File holds one file's "
                                        "content" % (self.path,))
            self.path, self._uri = keep_output(keep_dir[0], self.path, os.path.basename(self.path))

    @property
    def uri(self) -> str:
        if self._uri is None:
            import hashlib

            h = hashlib.sha1()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            self._uri = "sha1://%s/%s" % (h.hexdigest(), os.path.basename(self.path))
        return self._uri

    @property
    def name(self) -> str:
        return os.path.basename(self.path) if self.path else self._uri.rsplit("/", 1)[-1]

    def resolve(self) -> Optional[str]:
        return self.path

    def __fspath__(self) -> Optional[str]:
        return self.path


def install_stand_in() -> None:
    """Make ``import hither as hi`` work in code loaded here when hither is not installed:
    the decorators only mark the function, ``hi.File`` is a path-based stand-in."""
    import importlib.util

    if "hither" in sys.modules or importlib.util.find_spec("hither") is not None:
        return
    mod = types.ModuleType("hither")

    def passthrough(*_a: Any, **_k: Any) -> Any:
        return lambda f: f

    for name in ("function", "container", "additional_files", "local_modules", "opts"):
        setattr(mod, name, passthrough)

    class Config(object):
        def __init__(self, **_k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return None

    class TemporaryDirectory(object):
        """``hi.TemporaryDirectory``: a fresh folder (a str), removed at the end."""

        def __init__(self, prefix="hither-", remove=True):
            self._prefix, self._remove, self.path = prefix, remove, None

        def __enter__(self):
            import tempfile

            self.path = tempfile.mkdtemp(prefix=self._prefix, dir=os.environ.get("HITHER_TEMP_DIR") or None)
            return self.path

        def __exit__(self, *a):
            if self._remove and self.path:
                import shutil

                shutil.rmtree(self.path, ignore_errors=True)

    def wait(timeout=None):
        """``hi.wait()``: code run with the stand-in starts no jobs, so none to wait for."""
        return None

    def reset():
        """``hi.reset()``: nothing to cancel."""
        return None

    for name, value in (("Config", Config), ("TemporaryDirectory", TemporaryDirectory),
                        ("wait", wait), ("reset", reset),
                        ("File", _StandInFile), ("__hither_stand_in__", True)):
        setattr(mod, name, value)
    sys.modules["hither"] = mod
