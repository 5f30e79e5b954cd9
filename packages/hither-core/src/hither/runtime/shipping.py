"""Shipping the runtime: the one file (``runner.py``) that goes into every job directory, a
zip (zipapp-style) of this package's modules under the name ``_hither_runtime`` (not
``hither``: inside an image ``import hither`` must find the installed hither or the
stand-in) with a ``__main__.py`` at its root. CPython runs a zip given as the script, whatever
its extension: ``python3 runner.py JOB_DIR``. Built once per process, with the same bytes
every time (sorted entries, fixed timestamps and modes, stored uncompressed).

Each module goes in twice: its source, and its bytecode for the Python that builds the zip
(``<name>.pyc``, an unchecked hash-based pyc: no timestamps). zipimport cannot write
bytecode, so without it every run compiles the whole runtime again (~20 ms of a ~65 ms
container job here); a Python of another version finds the magic number wrong and
compiles the source as before.
"""
from __future__ import annotations

import importlib.util
import io
import marshal
import os
import zipfile

from .jobdir import RUNNER

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import List

PACKAGE = "_hither_runtime"
_NOT_SHIPPED = ("__init__.py", "shipping.py")  # the public face and this builder stay here
_INIT = ('"""hither\'s job runtime, as shipped in a job directory\'s runner.py (see '
         'hither.runtime.shipping)."""\n')
_MAIN = ('"""hither\'s job runtime, shipped as a job directory\'s runner.py (a zip): '
         '``python3 runner.py JOB_DIR`` or ``--serve ...``."""\n'
         "import sys\n\n"
         "from %s.cli import main\n\n"
         "if __name__ == \"__main__\":\n"
         "    sys.exit(main())\n" % PACKAGE)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_BUILT: List[bytes] = []


def _entry(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # unix, wherever it is built
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def pyc_bytes(name: str, source: bytes) -> bytes:
    """The bytecode of ``source`` for this Python as an unchecked hash-based pyc (PEP 552):
    zipimport loads it as it is, whatever the zip entry's time; ``name`` is the path
    tracebacks show."""
    flags = 0b01  # hash-based, source not checked
    code = compile(source, name, "exec", dont_inherit=True, optimize=0)  # as `python3 runner.py` would
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little") + importlib.util.source_hash(source)
            + marshal.dumps(code))


def _module(z: zipfile.ZipFile, name: str, source: bytes) -> None:
    _entry(z, name, source)
    _entry(z, name + "c", pyc_bytes(RUNNER + "/" + name, source))


def build_runner() -> bytes:
    """The bytes of the shipped ``runner.py``, built from this package's modules now."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(n for n in os.listdir(here) if n.endswith(".py") and n not in _NOT_SHIPPED)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        _module(z, "__main__.py", _MAIN.encode("utf-8"))
        _module(z, PACKAGE + "/__init__.py", _INIT.encode("utf-8"))
        for name in names:
            with open(os.path.join(here, name), "rb") as f:
                _module(z, "%s/%s" % (PACKAGE, name), f.read())
    return buf.getvalue()


def runner_bytes() -> bytes:
    """The shipped ``runner.py`` (built on first use, then the same bytes for this process;
    another process's build holds the same sources, its .pyc entries may differ: marshal
    marks shared objects by their reference counts)."""
    if not _BUILT:
        _BUILT.append(build_runner())
    return _BUILT[0]


def write_runner(path: str) -> None:
    """Write the shipped runtime at ``path`` (a job directory's ``runner.py``)."""
    with open(path, "wb") as f:
        f.write(runner_bytes())
