"""The hither job runner: ``python -m hither.runtime.runner JOB_DIR`` (or ``python3 runner.py JOB_DIR``).

One self-contained, stdlib-only module (numpy is imported only when arrays are present),
in Python 3.8 syntax, so it can be copied into any image or cluster node that has Python.
It also holds what every process that runs jobs shares: the JSON wire format of values,
console capture, and calling a function with runtime info.

A job directory holds ``spec.json`` (a ``hither.models.JobSpec``), ``args.json`` (+ ``.npy``
files under ``arrays/``), ``code.zip`` (the function's code bundle) and optionally
``files/``. The runner writes ``result.json`` (+ arrays) or ``error.json``, and
``runtime.json``; each atomically. Exit code 0 when those were written (even if the
function raised), 3 when the job directory itself is unusable.
"""
from __future__ import print_function

import ast
import io
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import types
import zipfile
from contextlib import contextmanager

TAG = "_hither"
RESULT, ERROR, RUNTIME = "result.json", "error.json", "runtime.json"


# ------------------------------------------------------------------ wire format of values
def _type_name(t):
    mod = t.__module__
    return "%s:%s" % ("__main__" if mod == "__hither_main__" else mod, t.__qualname__)


def encode_value(v, array_sink, file_encoder=None):
    """A JSON-able form of a hither value. ``array_sink(ndarray) -> ref`` stores an array;
    ``file_encoder(file) -> dict`` describes a File (default: its uri and path).

    Tagged forms (key ``"_hither"``): str (hex of UTF-8 with lone surrogates), tuple,
    ndarray (ref), npscalar (dtype and hex bytes;
    a void scalar as a 0-d "array"), npstr / npbytes (numpy str_ / bytes_: the value),
    typed (an int/float/str subclass such as an Enum: "type" module:qualname and the plain
    "value"), file (uri, path), float (non-finite, as repr; a NaN also as "hex" of its bytes), dict (a dict that has a
    "_hither" key), pairs (a dict with a key that UTF-8 cannot encode: [key, value]
    items).
    """
    t = type(v)
    if t is str:
        return _encode_str(v)
    if v is None or t is bool or t is int:
        return v
    if t is float:
        if math.isfinite(v):
            return v
        if math.isnan(v):  # its sign and payload bits too: a NaN is not just "nan"
            return {TAG: "float", "repr": repr(v), "hex": struct.pack("<d", v).hex()}
        return {TAG: "float", "repr": repr(v)}
    if t is list:
        return [encode_value(x, array_sink, file_encoder) for x in v]
    if t is tuple:
        return {TAG: "tuple", "items": [encode_value(x, array_sink, file_encoder) for x in v]}
    if t is dict:
        if any(type(k) is str and type(_encode_str(k)) is not str for k in v):
            # a key UTF-8 JSON cannot hold: the dict as a list of (key, value) pairs
            return {TAG: "pairs", "items": [[_encode_str(k), encode_value(x, array_sink, file_encoder)]
                                            for k, x in v.items()]}
        items = {k: encode_value(x, array_sink, file_encoder) for k, x in v.items()}
        return {TAG: "dict", "items": items} if TAG in v else items
    np = sys.modules.get("numpy")  # a numpy value means numpy is loaded
    if np is not None and isinstance(v, np.ndarray):
        return {TAG: "ndarray", "ref": array_sink(v)}
    if np is not None and isinstance(v, np.generic):
        if isinstance(v, np.str_):  # the Python value: numpy's buffer drops trailing NULs
            return {TAG: "npstr", "value": _encode_str(str.__str__(v))}
        if isinstance(v, np.bytes_):
            return {TAG: "npbytes", "hex": bytes(v).hex()}
        if isinstance(v, np.void):  # its dtype (fields, offsets) travels as an array's does
            return {TAG: "npscalar", "array": encode_value(np.asarray(v), array_sink, file_encoder)}
        return {TAG: "npscalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    wire = getattr(t, "__hither_wire__", None)
    if wire is not None:  # a value already in the wire format (a result held in a store)
        return wire(v)
    if hasattr(v, "__fspath__") and hasattr(v, "uri"):  # hither.File or the runner's stand-in
        if file_encoder is not None:
            return file_encoder(v)
        return {TAG: "file", "uri": v.uri, "path": getattr(v, "path", None)}
    if isinstance(v, int):  # subclasses (bool cannot be subclassed): keep the class
        return {TAG: "typed", "type": _type_name(t), "value": int.__int__(v)}
    if isinstance(v, float):
        return {TAG: "typed", "type": _type_name(t),
                "value": encode_value(float.__float__(v), array_sink, file_encoder)}
    if isinstance(v, str):
        return {TAG: "typed", "type": _type_name(t), "value": _encode_str(str.__str__(v))}
    raise TypeError("cannot encode a value of type %s.%s for hither" % (t.__module__, t.__qualname__))


def _encode_str(s):
    """``s``, or a tagged form when it holds lone surrogates (e.g. an undecodable file name
    from ``os.listdir``), which UTF-8 JSON cannot carry."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return {TAG: "str", "hex": s.encode("utf-8", "surrogatepass").hex()}


def _resolve_class(name):
    """The class ``module:qualname`` names (a ``__main__`` class: from the script the
    runner loaded, else this process's ``__main__``); None when it cannot be found."""
    import importlib

    mod_name, _, qualname = name.partition(":")
    candidates = ["__hither_main__", "__main__"] if mod_name == "__main__" else [mod_name]
    for m in candidates:
        mod = sys.modules.get(m)
        if mod is None and m != "__hither_main__":
            try:
                mod = importlib.import_module(m)
            except Exception:  # noqa: BLE001 - not importable here
                mod = None
        obj = mod
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, type):
            return obj
    return None


def _decode_typed(d, exact):
    value = d["value"]
    if type(value) is dict:
        value = decode_value(value, None)
    base = type(value)
    cls = _resolve_class(d["type"])
    if cls is None or base not in (int, float, str) or not issubclass(cls, base):
        if exact:
            raise ValueError("a value of class %s cannot be rebuilt here: the class is not "
                             "importable in this process (or is not a %s subclass)"
                             % (d["type"].replace(":", "."), base.__name__))
        return value  # where the class does not exist (e.g. in a container): the plain value
    return cls(value)  # an Enum looks its member up by value


def decode_value(d, array_source, file_decoder=None, exact=False):
    """Inverse of ``encode_value``: ``array_source(ref) -> ndarray``; ``file_decoder(dict)``.

    A value of an int/float/str subclass comes back as an instance of its class when the
    class can be imported here; otherwise ``exact=True`` raises ``ValueError`` and
    ``exact=False`` (the runner, which may lack the user's modules) gives the plain value.
    """
    t = type(d)
    if t is list:
        return [decode_value(x, array_source, file_decoder, exact) for x in d]
    if t is not dict:
        return d
    tag = d.get(TAG)
    if tag is None:
        return {k: decode_value(x, array_source, file_decoder, exact) for k, x in d.items()}
    if tag == "tuple":
        return tuple(decode_value(x, array_source, file_decoder, exact) for x in d["items"])
    if tag == "pairs":
        return {decode_value(k, None): decode_value(x, array_source, file_decoder, exact)
                for k, x in d["items"]}
    if tag == "dict":
        return {k: decode_value(x, array_source, file_decoder, exact) for k, x in d["items"].items()}
    if tag == "str":
        return bytes.fromhex(d["hex"]).decode("utf-8", "surrogatepass")
    if tag == "ndarray":
        return array_source(d["ref"])
    if tag == "npscalar":
        import numpy as np

        if "array" in d:  # a 0-d array: copied out of any mapping, then its item
            return np.array(decode_value(d["array"], array_source, file_decoder, exact))[()]
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.dtype(d["dtype"]))[0]
    if tag == "npstr":
        import numpy as np

        return np.str_(decode_value(d["value"], None))
    if tag == "npbytes":
        import numpy as np

        return np.bytes_(bytes.fromhex(d["hex"]))
    if tag == "typed":
        return _decode_typed(d, exact)
    if tag == "float":
        if "hex" in d:
            return struct.unpack("<d", bytes.fromhex(d["hex"]))[0]
        return float(d["repr"])
    if tag == "file":
        return file_decoder(d) if file_decoder is not None else d
    raise ValueError("unknown hither wire tag %r" % (tag,))


# ------------------------------------------------------------------ console capture
_local = threading.local()
_install_lock = threading.Lock()


class _Capture(object):
    """One job's console record on one thread: the parts written (``buf``), whether they
    also reach the console (``echo``), and the end of a line not yet echoed (``pending``)."""

    __slots__ = ("buf", "echo", "pending")

    def __init__(self, buf, echo):
        self.buf, self.echo, self.pending = buf, echo, []


class _Tee(io.TextIOBase):
    """Stands in for sys.stdout/stderr: output reaches the original stream and, while the
    current thread runs a job, that job's record too (other threads never mix in).

    A job's output is echoed in whole lines, each batch in one write to the original
    stream: ``print`` writes its text and its newline separately, so with an unbuffered
    stream (``PYTHONUNBUFFERED``) two workers sharing a console pipe would otherwise break
    each other's lines. A line's end still unwritten is echoed at ``flush()`` (as
    ``print(..., flush=True)`` does) and when the job ends."""

    def __init__(self, original, slot):
        self._original = original
        self._slot = slot

    def write(self, s):
        stack = getattr(_local, self._slot, None)
        if not stack:
            return self._original.write(s)
        rec = stack[-1]
        rec.buf.append(s)
        if rec.echo:
            cut = max(s.rfind("\n"), s.rfind("\r")) + 1  # "\r": a progress line redrawn
            if cut == 0:
                rec.pending.append(s)
            else:
                rec.pending.append(s[:cut])
                self._emit(rec)
                if cut < len(s):
                    rec.pending.append(s[cut:])
        return len(s)

    def _emit(self, rec):
        if rec.pending:
            text = "".join(rec.pending)
            del rec.pending[:]
            # one write of whole lines, flushed at once: a pipe takes a write of up to
            # PIPE_BUF (4 KiB) bytes whole, so another process's output cannot cut into it
            self._original.write(text)
            self._original.flush()

    def flush(self):
        stack = getattr(_local, self._slot, None)
        if stack:
            self._emit(stack[-1])
        self._original.flush()

    def isatty(self):
        return self._original.isatty()

    def fileno(self):
        return self._original.fileno()

    @property
    def encoding(self):
        return getattr(self._original, "encoding", "utf-8")

    def __getattr__(self, name):
        return getattr(self._original, name)


def _start_capture(echo):
    """Begin collecting this thread's output; returns (stdout parts, stderr parts)."""
    if not isinstance(sys.stdout, _Tee) or not isinstance(sys.stderr, _Tee):
        with _install_lock:
            if not isinstance(sys.stdout, _Tee):
                sys.stdout = _Tee(sys.stdout, "out")
            if not isinstance(sys.stderr, _Tee):
                sys.stderr = _Tee(sys.stderr, "err")
    out, err = [], []
    for slot, buf in (("out", out), ("err", err)):
        stack = getattr(_local, slot, None)
        if stack is None:
            stack = []
            setattr(_local, slot, stack)
        stack.append(_Capture(buf, echo))
    return out, err


def _end_capture():
    for slot, stream in (("out", sys.stdout), ("err", sys.stderr)):
        rec = getattr(_local, slot).pop()
        if rec.pending:  # the job's last line, without its newline
            if isinstance(stream, _Tee):
                stream = stream._original
            try:
                stream.write("".join(rec.pending))
            except (OSError, ValueError):
                pass


@contextmanager
def capture(echo=True):
    """Collect what this thread prints inside the block: yields (stdout parts, stderr parts)."""
    parts = _start_capture(echo)
    try:
        yield parts
    finally:
        _end_capture()


# ------------------------------------------------------------------ calling a function
_HOST = socket.gethostname()


def error_dict(exc, tb_text=None):
    """An exception as a JSON-able dict (the fields of ``hither.models.ErrorInfo``)."""
    args = None
    try:
        json.dumps(list(exc.args))
        args = list(exc.args)
    except (TypeError, ValueError):
        pass
    if tb_text is None:
        tb_text = getattr(exc, "remote_traceback", None) or "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__))
    t = type(exc)
    return {"type_module": t.__module__, "type_name": t.__qualname__, "message": str(exc),
            "args_json": args, "traceback": tb_text}


class JobExitError(Exception):
    """A job's function raised SystemExit, KeyboardInterrupt or another exception that is
    not an ``Exception`` (e.g. ``sys.exit(3)``, an argparse error, ``raise KeyboardInterrupt``).
    A job cannot end the program that runs it: this is the job's error, and ``exit_type``
    names what was raised."""

    def __init__(self, message, exit_type=""):
        Exception.__init__(self, message, exit_type)
        self.exit_type = exit_type

    def __str__(self):
        return str(self.args[0]) if self.args else ""


JobExitError.__module__ = "hither.runtime.runner"  # the same class when this file runs as a script


def _exit_error(exc):
    t = type(exc)
    name = t.__name__ if t.__module__ == "builtins" else "%s.%s" % (t.__module__, t.__qualname__)
    what = "%s(%s)" % (name, ", ".join(repr(a) for a in exc.args))
    hint = (" (it tried to end the process: sys.exit(), exit(), or an argparse error, whose "
            "message is in the job's stderr)" if isinstance(exc, SystemExit) else "")
    err = JobExitError("the job's function raised %s%s; a job cannot end or interrupt the "
                       "program running it, so this is the job's error" % (what, hint), name)
    err.__cause__ = exc
    return err


# a real Ctrl-C (SIGINT) while a job runs in the main thread, told apart from a job raising
# KeyboardInterrupt itself: only the former ends the calling program
_sigint = {"real": False}


def _on_sigint(signum, frame):
    _sigint["real"] = True
    raise KeyboardInterrupt


try:  # the C module: signal's wrappers convert to enums, ~20 us per job
    import _signal as _sig
except ImportError:  # pragma: no cover - not CPython
    _sig = signal


def _watch_sigint():
    """Install the SIGINT recorder for a job in the main thread; True if installed (then
    ``_unwatch_sigint`` must follow). A plain function pair: a context manager per job
    costs more than the job itself when jobs are tiny."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if _sig.getsignal(_sig.SIGINT) is not _sig.default_int_handler:
            return False  # the program's own handler, or an outer job's recorder
        _sigint["real"] = False
        _sig.signal(_sig.SIGINT, _on_sigint)
    except (ValueError, AttributeError):
        return False
    return True


def _unwatch_sigint():
    _sig.signal(_sig.SIGINT, _sig.default_int_handler)
    _sigint["real"] = False


def call_function(fn, kwargs, handler="", echo=True):
    """Call ``fn(**kwargs)`` capturing console output.

    Returns (result, exception or None, traceback text, runtime info dict); never raises
    for an error of the function: a SystemExit, KeyboardInterrupt or other non-``Exception``
    the function raises becomes a ``JobExitError``. Only a real Ctrl-C (SIGINT) that arrives
    while the job runs in the main thread propagates, as KeyboardInterrupt.
    """
    ri = {"host": _HOST, "pid": os.getpid(), "handler": handler, "start_time": time.time()}
    result, error, tb_text = None, None, ""
    out, err = _start_capture(echo)  # not a context manager: tiny jobs pay per call
    watching = _watch_sigint()
    try:
        result = fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - the job's error is data here
        if isinstance(exc, KeyboardInterrupt) and _sigint["real"] \
                and threading.current_thread() is threading.main_thread():
            raise
        tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = exc if isinstance(exc, Exception) else _exit_error(exc)
    finally:
        if watching:
            _unwatch_sigint()
        _end_capture()
    ri["end_time"] = time.time()
    ri["stdout"], ri["stderr"] = "".join(out), "".join(err)
    if out or err:  # show it now, even where the stream is block-buffered (a pipe)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    ri["status"] = "error" if error is not None else "finished"
    return result, error, tb_text, ri


# ------------------------------------------------------------------ stand-in hither module
#: the job directory while a job runs here: a stand-in File made then keeps its content there
_keep_dir = [None]


class _StandInFile(object):
    """``hi.File`` where hither is not installed (inside a bare container image). As with
    ``hi.File``, the content of a File made by the job is kept when it is made (in the job
    directory's ``outputs/``), so it survives a temporary folder removed before the job ends."""

    def __init__(self, path=None, uri=None):
        self.path = os.path.abspath(path) if path is not None else None
        self._uri = uri
        if self.path is not None and uri is None and _keep_dir[0] is not None:
            if os.path.isdir(self.path):
                raise IsADirectoryError("hi.File(%r) is a directory: a hi.File holds one file's "
                                        "content" % (self.path,))
            self.path, self._uri = _keep_output(_keep_dir[0], self.path, os.path.basename(self.path))

    @property
    def uri(self):
        if self._uri is None:
            import hashlib

            h = hashlib.sha1()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            self._uri = "sha1://%s/%s" % (h.hexdigest(), os.path.basename(self.path))
        return self._uri

    @property
    def name(self):
        return os.path.basename(self.path) if self.path else self._uri.rsplit("/", 1)[-1]

    def resolve(self):
        return self.path

    def __fspath__(self):
        return self.path


def _install_stand_in():
    """Make ``import hither as hi`` work in code loaded here when hither is not installed:
    the decorators only mark the function, ``hi.File`` is a path-based stand-in."""
    import importlib.util

    if "hither" in sys.modules or importlib.util.find_spec("hither") is not None:
        return
    mod = types.ModuleType("hither")

    def passthrough(*_a, **_k):
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

    mod.Config = Config
    mod.TemporaryDirectory = TemporaryDirectory
    mod.File = _StandInFile
    mod.__hither_stand_in__ = True
    sys.modules["hither"] = mod


# ------------------------------------------------------------------ loading the code
_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _root_name(node):
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _module_aliases(tree):
    """Names bound to imported modules (``import numpy as np`` -> np), hither's excluded."""
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name.split(".")[0] != "hither":
                    names.add(a.asname or a.name.split(".")[0])
    return names


def _definition_only(stmt, modules):
    """Whether a top-level statement only defines things: imports, functions, classes, and
    assignments whose calls all go to imported modules (``logger = logging.getLogger()``,
    ``DATA = os.path.join(...)``), never to hither or the script's own functions."""
    if isinstance(stmt, _KEEP):
        return True
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        value = stmt.value
        return value is None or all(_root_name(n.func) in modules
                                    for n in ast.walk(value) if isinstance(n, ast.Call))
    if isinstance(stmt, ast.Try):
        return all(_definition_only(s, modules) or isinstance(s, ast.Pass) for s in stmt.body)
    return False


def load_script_definitions(path, module_name="__hither_main__"):
    """Load a script's definitions only: imports, functions, classes and assignments
    that call only imported modules; other top-level statements (the script's own work, its
    ``if __name__ == '__main__':`` block) are skipped, so loading never re-runs a pipeline."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    modules = _module_aliases(tree)
    tree.body = [s for s in tree.body if _definition_only(s, modules)]
    mod = types.ModuleType(module_name)
    mod.__file__ = path
    sys.modules[module_name] = mod
    exec(compile(tree, path, "exec"), mod.__dict__)
    return mod


def load_job_function(spec, code_dir):
    """The raw function of a job spec, from its extracted code bundle."""
    for p in reversed(spec.get("sys_paths") or [""]):
        full = os.path.join(code_dir, p) if p else code_dir
        if full not in sys.path:
            sys.path.insert(0, full)
    if spec["module"] == "__main__":
        mod = load_script_definitions(os.path.join(code_dir, spec["module_relpath"]))
    else:
        import importlib

        mod = importlib.import_module(spec["module"])
    obj = mod
    for part in spec["qualname"].split("."):
        obj = getattr(obj, part)
    return getattr(obj, "raw", obj)


# ------------------------------------------------------------------ the job directory
#: [whether outputs are fsynced]: off in the forks of a job server started with
#: ``--no-fsync`` (``JobServerLauncher``'s: its caller reads the outputs on this machine as
#: soon as the job ends, and a crash of the machine ends the server and its jobs too, which
#: are then rerun); ~0.7 ms of CPU per job, more under disk load
_FSYNC = [True]


def write_json_atomic(path, data, fsync=True):
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


def _write_json_atomic(path, data):
    """The runner's own outputs: fsynced unless its job server runs with ``--no-fsync``."""
    write_json_atomic(path, data, fsync=_FSYNC[0])


def _copy_hashing(src, dest):
    """Copy ``src`` to ``dest`` and return the sha1 of what was copied."""
    import hashlib

    h = hashlib.sha1()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 22), b""):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _keep_output(job_dir, src, name):
    """Copy ``src`` to ``outputs/<sha1>/<name>`` in the job directory: (its path, its URI)."""
    tmp = os.path.join(job_dir, "outputs", ".partial-%d-%s" % (os.getpid(), os.urandom(6).hex()))
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    digest = _copy_hashing(src, tmp)
    os.makedirs(os.path.join(job_dir, "outputs", digest), exist_ok=True)
    dest = os.path.join(job_dir, "outputs", digest, name)
    os.replace(tmp, dest)
    return dest, "sha1://%s/%s" % (digest, name)


def _returned_file_encoder(job_dir):
    """Encodes each File a job returns as a copy in ``outputs/<sha1>/<name>`` of the job
    directory, with its sha1: the caller gets this content, wherever the job ran and
    whatever happens to the original path afterwards."""

    def encode(v):
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
        dest, uri = _keep_output(job_dir, src, name)
        return {TAG: "file", "uri": uri, "local": os.path.relpath(dest, job_dir).replace(os.sep, "/"),
                "sha1": uri[7:47]}

    return encode


# ------------------------------------------------------------------ processes a job leaves
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Make this process the subreaper of its descendants (Linux >= 3.4): a process the job
    starts whose parent ends (a double fork, a daemon in a session of its own) becomes a
    child of this process instead of init's, so ``kill_leftovers`` finds it. True if set."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


_PRCTL = []  # [libc's prctl, or None]: loaded once (importing ctypes costs ~4 ms per job)


def _prctl():
    """libc's ``prctl`` (None off Linux or without ctypes); the job server loads it before
    it forks, so its jobs find it loaded."""
    if not _PRCTL:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).prctl
            except (ImportError, OSError, AttributeError):  # a Python without ctypes: children only
                fn = None
        _PRCTL.append(fn)
    return _PRCTL[0]


def _leftover_pids(me, lead):
    """Children of ``me`` and, when ``me`` leads its process group, the group's other
    members (read from /proc; empty where there is none)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == me or (lead and int(fields[2]) == me):
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_leftovers(timeout=5.0):
    """After a job: SIGKILL every process it left running, and reap them. Those are the
    children of this process (with ``become_subreaper``, every descendant whose parent has
    ended is one, whatever its session) and, if this process leads its process group, the
    group's members. Killed processes' own children come to this process in turn, so it
    repeats until no child is left (at most ``timeout`` s). Costs one system call when the
    job left nothing. Returns False if children were still alive at the end."""
    me = os.getpid()
    lead = os.getpgrp() == me
    deadline = time.monotonic() + timeout
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass  # reaps children that ended
        except ChildProcessError:
            return True  # no child left
        if time.monotonic() > deadline:
            return False
        pids = _leftover_pids(me, lead)
        if not pids:  # no /proc: the process group goes when the runner's launcher kills it
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)


class _Watchdog(object):
    """The runner's own stop at the job's timeout (``spec["timeout"]``): it writes a
    JobTimeoutError as the job's outcome and ends the runner (and, where the runner leads
    its process group, every process the job started), so a job stops on time even with
    no supervisor around it (a Slurm pilot, a remote worker). Launchers stop the runner
    too; whichever comes first, the outcome is the same error."""

    def __init__(self, job_dir, timeout, ri):
        self.job_dir, self.timeout, self.ri = job_dir, timeout, ri
        self.lock = threading.Lock()
        self.finished = False
        self.timer = threading.Timer(timeout, self.fire)
        self.timer.daemon = True

    def start(self):
        self.timer.start()

    def done(self):
        """The job's outcome is being written: the watchdog must not write another."""
        with self.lock:
            fired = self.finished
            self.finished = True
        self.timer.cancel()
        return not fired

    def fire(self):
        with self.lock:
            if self.finished:
                return
            self.finished = True
        msg = ("job %s was stopped by its runner after running longer than job_timeout=%s s; "
               "raise hi.Config(job_timeout=...) if it needs longer"
               % (self.ri.get("function_name", "?"), self.timeout))
        try:
            _write_json_atomic(os.path.join(self.job_dir, ERROR), {
                "type_module": "hither.errors", "type_name": "JobTimeoutError", "message": msg,
                "args_json": [msg], "traceback": ""})
            ri = dict(self.ri, status="error", end_time=time.time(), timed_out=True)
            _write_json_atomic(os.path.join(self.job_dir, RUNTIME), ri)
        finally:
            try:
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            kill_leftovers(1.0)  # the job's processes, orphans in sessions of their own too
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os._exit(124)


def _finite_timeout(value):
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return t if t > 0 and math.isfinite(t) else None


_PARENT_WATCHED = [None]  # (pid, parent) whose watch thread runs


def _die_with_parent(parent_pid):
    """End this runner, with every process of its group, when the process that launched it
    (``$HITHER_RUNNER_PARENT``) is gone: a launcher killed with SIGKILL leaves no job behind.
    A thread polls ``getppid`` (portable; a reparented runner sees another parent)."""
    def watch():
        while True:
            if os.getppid() != parent_pid:
                import signal

                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(125)
            time.sleep(0.5)

    t = threading.Thread(target=watch, name="hither-runner-parent", daemon=True)
    t.start()


def _console_to(path):
    """Send this process's stdout and stderr (and its children's) to ``path``, line by line,
    so a watcher (a compute resource shipping live logs) sees output while the job runs.
    Asked for by the launching side with ``spec["extra"]["console_file"]``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream, target in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.dup2(fd, target)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):  # not a TextIOWrapper
            pass


def _code_dir(job_dir, code_cache, bundle=None):
    """Where the job's code bundle is unpacked: ``code/`` in the job directory, or, with a
    ``code_cache`` folder (the job server's), ``<code_cache>/<sha1 of code.zip>``, unpacked
    by the first job of that bundle and reused by the next ones (and their compiled
    ``__pycache__``): ~1.5 ms less per job. Jobs of one bundle then share its folder, which
    they must not write to (a job's own files belong in its working directory). ``bundle``:
    that sha1 when the caller has it (the server that chose a process for the bundle), so
    an unpacked bundle is not read again."""
    zip_path = os.path.join(job_dir, "code.zip")
    if not code_cache:
        code_dir = os.path.join(job_dir, "code")
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(code_dir)
        return code_dir
    data = None
    if bundle is None:
        data = _read_bytes(zip_path)
        bundle = _sha1_hex(data)
    code_dir = os.path.join(code_cache, bundle)
    if not os.path.isdir(code_dir):  # unpacked aside, then renamed: never seen half-written
        if data is None:
            data = _read_bytes(zip_path)
        tmp = "%s.partial-%d" % (code_dir, os.getpid())
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            z.extractall(tmp)
        try:
            os.rename(tmp, code_dir)
        except OSError:  # another job of this bundle was first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return code_dir


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _sha1_hex(data):
    import hashlib

    return hashlib.sha1(data).hexdigest()


def run_job_dir(job_dir, code_cache=None, bundle=None):
    """Run the job in ``job_dir`` and write its outputs there. Returns the exit code.
    ``code_cache``: a folder where code bundles are unpacked once each, ``bundle`` the sha1
    of this job's (see ``_code_dir``)."""
    job_dir = os.path.abspath(job_dir)
    parent = os.environ.get("HITHER_RUNNER_PARENT")
    if parent and parent.isdigit() and _PARENT_WATCHED[0] != (os.getpid(), parent):
        _PARENT_WATCHED[0] = (os.getpid(), parent)  # once per process: a reused one runs many jobs
        _die_with_parent(int(parent))
    try:
        with open(os.path.join(job_dir, "spec.json")) as f:
            spec = json.load(f)
        with open(os.path.join(job_dir, "args.json")) as f:
            args_data = json.load(f)
    except (OSError, ValueError) as exc:
        sys.stderr.write("hither runner: %s is not a usable job directory: %s\n" % (job_dir, exc))
        return 3
    console = (spec.get("extra") or {}).get("console_file")
    if console:
        _console_to(os.path.join(job_dir, console))
    _install_stand_in()
    become_subreaper()  # orphans of the job's processes come to this runner: see kill_leftovers
    ri = {"host": _HOST, "pid": os.getpid(), "handler": spec.get("handler", ""),
          "start_time": time.time()}
    watchdog = None
    timeout = _finite_timeout(spec.get("timeout"))
    if timeout is not None:
        watchdog = _Watchdog(job_dir, timeout, dict(ri, function_name=spec.get("function_name")))
        watchdog.start()
    try:
        fn = load_job_function(spec, _code_dir(job_dir, code_cache, bundle))
        no_resolve = bool(spec.get("no_resolve_input_files"))

        def array_source(ref):
            import numpy as np

            return np.load(os.path.join(job_dir, ref), mmap_mode="c")

        def file_decoder(d):
            local = d.get("local")
            path = os.path.join(job_dir, local) if local else d.get("path")
            file_cls = getattr(sys.modules.get("hither"), "File", _StandInFile)
            if no_resolve:
                try:
                    return file_cls(path)
                except Exception:
                    return _StandInFile(path)
            return path

        kwargs = decode_value(args_data, array_source, file_decoder)
    except BaseException as exc:  # noqa: BLE001
        err = error_dict(exc)
        err["stage"] = "load"
        if watchdog is None or watchdog.done():
            _write_json_atomic(os.path.join(job_dir, ERROR), err)
            ri.update(status="error", stdout="", stderr="")
            _write_json_atomic(os.path.join(job_dir, RUNTIME), ri)
        return 0
    _keep_dir[0] = job_dir
    result, error, tb_text, ri2 = call_function(fn, kwargs, spec.get("handler", ""))
    _keep_dir[0] = None
    kill_leftovers()  # every process the job started ends with it, before its outcome is written
    ri.update(ri2)
    outputs = {}
    if error is None:
        counter = [0]
        os.makedirs(os.path.join(job_dir, "arrays"), exist_ok=True)

        def array_sink(a):
            import numpy as np

            counter[0] += 1
            rel = "arrays/result-%d.npy" % counter[0]
            np.save(os.path.join(job_dir, rel), a, allow_pickle=False)
            return rel

        try:
            outputs[RESULT] = {"value": encode_value(result, array_sink, _returned_file_encoder(job_dir))}
        except BaseException as exc:  # noqa: BLE001 - e.g. a result type hither cannot carry
            error, tb_text = exc, traceback.format_exc()
    if error is not None:
        outputs = {ERROR: error_dict(error, tb_text)}
        ri["status"] = "error"
    if watchdog is not None and not watchdog.done():
        return 0  # the watchdog has written the timeout as the outcome
    for name, data in outputs.items():
        _write_json_atomic(os.path.join(job_dir, name), data)
    _write_json_atomic(os.path.join(job_dir, RUNTIME), ri)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m hither.runtime.runner JOB_DIR\n")
        return 2
    return run_job_dir(argv[0])


# ------------------------------------------------------------------ the job server
# ``python -m hither.runtime.runner --serve``: a long-lived process that runs many job directories,
# each in a fork of this (clean) process, so jobs of two code bundles that share a module
# name never see each other's modules. The server never imports user code. Per job:
#
#   server --fork--> job process (leader of its own process group G)
#
# The job's processes are in G unless they leave it; the runner kills what the job left
# (G's members and, as their subreaper, orphans in sessions of their own) before it writes
# the outcome, and the server kills G again when it reaps the job process (a job that
# crashed). Timeout and cancel kill G from the server. When the server dies, a thread of
# each job process sees its death pipe reach EOF and kills G. Code bundles are unpacked
# once per server, in a folder of its own (see ``_code_dir``), removed when it exits.
#
# Input, one line each on stdin: a job directory path (run it), or JSON:
#   {"op": "run", "job_dir": ..., "timeout": s, "log": path, "env": {...}}
#   {"op": "cancel", "job_dir": ...}     {"op": "shutdown"}   (kills running jobs, exits)
# Output, one JSON line each on stdout: {"event": "ready", "pid": ...}, then per job
#   {"event": "started", "job_dir": ..., "pgid": ...} and
#   {"event": "ended", "job_dir": ..., "exit_code": int, "reason": "exited" | "signal" |
#    "timeout" | "cancelled" | "shutdown", "signal": int or null, "seconds": float}
# and {"event": "error", "job_dir": ..., "message": ...} for a request it cannot take.
# End of input: with --on-eof=drain (default) wait for running jobs, then exit; with
# --on-eof=kill (what a client that owns the server uses) kill them and exit. With
# --no-fsync, jobs write their outputs without fsync (see _FSYNC).
#
# With --reuse N, a job process that ended its job cleanly stays (at most N idle) and runs
# the next job of the same code bundle (sha1 of code.zip), sent on a pipe of its own; it
# answers "done CODE AGAIN" on another (see _worker_process). Its process group is still
# its own, so timeout and cancel kill it as above (and the next job gets a fresh fork).
# Jobs of one bundle then share a process one after another, as in a ParallelJobHandler's
# workers; a fork per job saves nothing for them but costs ~5 ms.

SERVE_USAGE = ("usage: python -m hither.runtime.runner --serve [--on-eof drain|kill] [--preload MOD,...] [--no-fsync]"
               " [--reuse N]\n"
               "       then one job directory (or JSON request) per line on stdin\n")


def _emit(obj):
    """One event line on stdout (the server's only use of it), flushed."""
    os.write(1, (json.dumps(obj) + "\n").encode("utf-8"))


def _reset_child_signals(signal_mod):
    signal_mod.set_wakeup_fd(-1)
    for s in (signal_mod.SIGCHLD, signal_mod.SIGTERM, signal_mod.SIGHUP, signal_mod.SIGPIPE):
        signal_mod.signal(s, signal_mod.SIG_DFL)
    signal_mod.signal(signal_mod.SIGINT, signal_mod.default_int_handler)


def _watch_server(death_r):
    """In a job process: kill its whole process group when the job server is gone (the
    death pipe, which only the server can write to, reaches end of file)."""
    def watch():
        try:
            while os.read(death_r, 512):
                pass
        except OSError:  # the job closed every descriptor (EBADF): stop watching
            return
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="hither-job-server-watch", daemon=True).start()


def _run_request(req, code_cache):
    """In a job process: run the job directory of request ``req`` with its console log and
    environment; returns the runner's exit code."""
    job_dir, log, env = req["job_dir"], req.get("log"), req.get("env")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    if env:
        os.environ.update(env)
    if os.path.isdir(job_dir):  # else run_job_dir says what is wrong (exit code 3)
        os.chdir(job_dir)
    return run_job_dir(job_dir, code_cache, req.get("bundle"))


def _stdin_null():
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def _print_crash():
    """The traceback of a crash of the runner itself, on stderr (never raising)."""
    try:
        traceback.print_exc()
    except BaseException:  # noqa: BLE001
        pass


def _job_process(req, code_cache):
    """In the job process (forked): run one job directory; never returns."""
    code = 70
    try:
        _stdin_null()
        code = _run_request(req, code_cache)
    except BaseException:  # noqa: BLE001 - a crash of the runner itself
        _print_crash()
    finally:
        _flush_std()
        os._exit(code)


#: a reused job process ends after this many jobs, or when it holds this much more memory
#: than after its first job (what a job freed may stay with the process)
_REUSE_MAX_JOBS = 1000
_REUSE_MAX_GROWTH = 1 << 30


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_process(req, code_cache, ctl_r, ev_w):
    """In a reused job process (forked, ``--reuse``): run ``req``, then, while the process
    is fit for it, further jobs of the same code bundle that the server sends on ``ctl_r``;
    after each job, ``done CODE AGAIN`` on ``ev_w`` (AGAIN 0: this process now exits).

    Between jobs it puts back what a job may change of the process: its console (fds 1
    and 2), environment, current folder, ``sys.path``, umask, signal handlers and a
    pending alarm; other process-wide state (resource limits, module globals) carries
    over, as in a ``ParallelJobHandler``'s workers; the job's
    modules stay imported (that is the saving: ~5 ms per job). A job that leaves a
    non-daemon thread running, raises out of the runner, or grows the process by 1 GiB
    ends the process instead. Never returns."""
    import signal as signal_mod

    code = 70
    try:
        _stdin_null()
        console = (os.dup(1), os.dup(2))
        env0, cwd0, path0 = dict(os.environ), os.getcwd(), list(sys.path)
        umask0 = os.umask(0o022)
        os.umask(umask0)
        ctl = os.fdopen(ctl_r, "rb")
        me = os.getpid()
        rss0 = None
        jobs = 0
        while True:
            fit = True
            try:
                code = _run_request(req, code_cache)
            except BaseException:  # noqa: BLE001 - a crash of the runner itself
                code, fit = 70, False
                _print_crash()
            if os.getpid() != me:  # a fork the job made returned here: it must not take jobs
                os._exit(code)
            jobs += 1
            _flush_std()
            os.dup2(console[0], 1)
            os.dup2(console[1], 2)
            if os.environ != env0:
                os.environ.clear()
                os.environ.update(env0)
            os.chdir(cwd0)
            sys.path[:] = path0
            os.umask(umask0)
            _reset_child_signals(signal_mod)
            signal_mod.setitimer(signal_mod.ITIMER_REAL, 0)  # an alarm the job set (or signal.alarm)
            rss = _rss_bytes()
            if rss0 is None:
                rss0 = rss
            fit = (fit and code == 0 and jobs < _REUSE_MAX_JOBS and rss - rss0 < _REUSE_MAX_GROWTH
                   and not any(t.is_alive() and not t.daemon for t in threading.enumerate()
                               if t is not threading.main_thread()))
            os.write(ev_w, ("done %d %d\n" % (code, int(fit))).encode("ascii"))
            if not fit:
                break
            line = ctl.readline()
            if not line:  # the server let this process go
                code = 0
                break
            req = json.loads(line)
    except BaseException:  # noqa: BLE001
        _print_crash()
    finally:
        _flush_std()
        os._exit(code)


class _Running(object):
    __slots__ = ("job_dir", "pid", "start", "deadline", "reason")

    def __init__(self, job_dir, pid, deadline):
        self.job_dir, self.pid, self.deadline = job_dir, pid, deadline
        self.start = time.time()
        self.reason = None  # set when the server kills it: timeout, cancelled, shutdown


class _Worker(object):
    """A reused job process (``--reuse``), as the server sees it."""
    __slots__ = ("pid", "key", "ctl_w", "ev_r", "buf")

    def __init__(self, pid, key, ctl_w, ev_r):
        self.pid, self.key, self.ctl_w, self.ev_r = pid, key, ctl_w, ev_r
        self.buf = b""


def _bundle_key(job_dir):
    """The sha1 of a job directory's code bundle (None without one): jobs reuse only a
    process that ran the same bundle (which is then told it: see ``_code_dir``)."""
    try:
        return _sha1_hex(_read_bytes(os.path.join(job_dir, "code.zip")))
    except OSError:
        return None


def _parse_request(line):
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        req = json.loads(line)
        if not isinstance(req, dict) or req.get("op") not in ("run", "cancel", "shutdown"):
            raise ValueError("a request needs op: run, cancel or shutdown")
        return req
    return {"op": "run", "job_dir": line}


_CODE_CACHE_PREFIX = "hither-code-"


def _sweep_code_caches(parent):
    """Remove the code-bundle folders (``hither-code-<host>-<pid>-*``) of job servers of
    this host that are gone without removing theirs (killed with SIGKILL). A folder removed
    by mistake (another pid namespace sharing the folder) is only unpacked again by the
    next job that needs it (``_code_dir``)."""
    import shutil

    mark = "%s%s-" % (_CODE_CACHE_PREFIX, _HOST)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len(mark):].split("-", 1)[0]
        if not name.startswith(mark) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that server still runs (or its pid was reused: kept, to be safe)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:  # e.g. not ours to signal: alive
            continue


def serve(on_eof="drain", preload=(), fsync=True, reuse=0):
    """Run the job server on stdin/stdout until end of input or shutdown. Returns 0.
    ``reuse``: keep up to that many job processes between jobs, each for further jobs of
    the code bundle it ran (see ``_worker_process``); 0: a fresh fork for every job."""
    import select
    import signal as signal_mod

    _install_stand_in()  # import hither once here, not in every job
    _prctl()  # and ctypes
    try:  # the codec of zip member names (each job unpacks code.zip)
        import encodings.cp437  # noqa: F401
    except ImportError:
        pass
    for name in preload:
        __import__(name)
    import shutil
    import tempfile

    code_cache = tempfile.mkdtemp(prefix="%s%s-%d-" % (_CODE_CACHE_PREFIX, _HOST, os.getpid()))
    _sweep_code_caches(os.path.dirname(code_cache))
    _FSYNC[0] = fsync
    death_r, death_w = os.pipe()  # only this process holds death_w: EOF = server gone
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    stop = []
    signal_mod.signal(signal_mod.SIGCHLD, lambda *_: None)
    for s in (signal_mod.SIGTERM, signal_mod.SIGHUP, signal_mod.SIGINT):
        signal_mod.signal(s, lambda *_: stop.append(1))
    signal_mod.set_wakeup_fd(wake_w)
    running = {}  # pid -> _Running
    by_dir = {}  # job_dir -> _Running
    workers = {}  # pid -> _Worker: the reused job processes, running a job or idle
    by_ev = {}  # a worker's event pipe -> its _Worker
    idle = []  # idle workers, oldest first
    buf = b""
    eof = False

    def kill(r, reason):
        if r.reason is None:
            r.reason = reason
        try:
            os.killpg(r.pid, signal_mod.SIGKILL)
        except OSError:
            pass

    def forget(w):
        """A worker that exits or was let go: its pipes closed, out of the pool."""
        if workers.pop(w.pid, None) is None:
            return
        by_ev.pop(w.ev_r, None)
        if w in idle:
            idle.remove(w)
        for fd in (w.ctl_w, w.ev_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def ended(r, code, sig):
        _emit({"event": "ended", "job_dir": r.job_dir, "exit_code": code,
               "reason": r.reason or ("signal" if sig is not None else "exited"),
               "signal": sig, "seconds": round(time.time() - r.start, 6)})

    def begin(job_dir, pid, timeout):
        r = _Running(job_dir, pid, time.monotonic() + float(timeout) if timeout else None)
        running[pid] = by_dir[job_dir] = r
        _emit({"event": "started", "job_dir": job_dir, "pgid": pid})

    def start(req):
        job_dir = req.get("job_dir")
        if not isinstance(job_dir, str) or not job_dir:
            _emit({"event": "error", "job_dir": job_dir, "message": "no job_dir given"})
            return
        job_dir = os.path.abspath(job_dir)
        if job_dir in by_dir:
            _emit({"event": "error", "job_dir": job_dir, "message": "this job directory is already running"})
            return
        req["job_dir"] = job_dir
        timeout = req.get("timeout")
        req.pop("bundle", None)  # only the server names it, from the bundle itself
        key = _bundle_key(job_dir) if reuse else None
        if key:
            req["bundle"] = key  # the job process need not hash it again
        for w in list(reversed(idle)) if key else ():  # the last used first: its caches are warm
            if w.key != key:
                continue
            idle.remove(w)
            try:
                os.write(w.ctl_w, (json.dumps(req) + "\n").encode("utf-8"))
            except OSError:  # it died meanwhile: reap() sees to it
                forget(w)
                continue
            begin(job_dir, w.pid, timeout)
            return
        pipes = ()
        try:
            if key:
                pipes = os.pipe() + os.pipe()  # ctl_r, ctl_w, ev_r, ev_w
            pid = os.fork()
        except OSError as exc:
            for fd in pipes:
                os.close(fd)
            _emit({"event": "error", "job_dir": job_dir, "message": "cannot fork: %s" % exc})
            return
        if pid == 0:
            try:
                os.setpgid(0, 0)
                os.dup2(2, 1)  # stdout is the server's event stream: only the server writes there
                others = [fd for w in workers.values() for fd in (w.ctl_w, w.ev_r)]
                for fd in [death_w, wake_r, wake_w, 0] + others + list(pipes[1:3]):
                    os.close(fd)
                _reset_child_signals(signal_mod)
                _watch_server(death_r)
            except BaseException:  # noqa: BLE001
                os._exit(72)
            if pipes:
                _worker_process(req, code_cache, pipes[0], pipes[3])
            _job_process(req, code_cache)
        try:
            os.setpgid(pid, pid)  # also here: no window where a kill misses the group
        except OSError:
            pass
        if pipes:
            os.close(pipes[0])
            os.close(pipes[3])
            w = workers[pid] = _Worker(pid, key, pipes[1], pipes[2])
            by_ev[w.ev_r] = w
        begin(job_dir, pid, timeout)

    def worker_events(w):
        try:
            chunk = os.read(w.ev_r, 512)
        except OSError:
            chunk = b""
        if not chunk:  # it is exiting: reap() sees to the rest
            forget(w)
            return
        w.buf += chunk
        while b"\n" in w.buf:
            line, _, w.buf = w.buf.partition(b"\n")
            parts = line.split()
            r = running.pop(w.pid, None)
            if r is None or len(parts) != 3 or parts[0] != b"done":
                continue
            by_dir.pop(r.job_dir, None)
            ended(r, int(parts[1]), None)
            if parts[2] == b"1" and r.reason is None and not eof and not stop:
                idle.append(w)
                while len(idle) > reuse:  # the oldest idle one goes (it exits at EOF)
                    forget(idle[0])

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = workers.get(pid)
            if w is not None:
                forget(w)
            r = running.pop(pid, None)
            if r is None:
                continue
            by_dir.pop(r.job_dir, None)
            try:  # the group may hold leftovers of a job that crashed or was killed
                os.killpg(pid, signal_mod.SIGKILL)
            except OSError:
                pass
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            ended(r, -sig if sig is not None else os.WEXITSTATUS(status), sig)

    _emit({"event": "ready", "pid": os.getpid()})
    try:
        while True:
            if stop:
                break
            if eof and (on_eof == "kill" or not running):
                break
            now = time.monotonic()
            deadlines = [r.deadline for r in running.values() if r.deadline and r.reason is None]
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            fds = ([wake_r] if eof else [0, wake_r]) + list(by_ev)
            ready = select.select(fds, [], [], wait)[0]
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except OSError:
                    pass
            for fd in ready:  # a job's end as its worker tells it, before reaping
                w = by_ev.get(fd)
                if w is not None:
                    worker_events(w)
            reap()
            if 0 in ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    eof = True
                buf += chunk
                while b"\n" in buf or (eof and buf):
                    line, _, buf = buf.partition(b"\n")
                    try:
                        req = _parse_request(line.decode("utf-8"))
                    except ValueError as exc:
                        _emit({"event": "error", "job_dir": None, "message": "bad request: %s" % exc})
                        continue
                    if req is None:
                        continue
                    if req["op"] == "run":
                        start(req)
                    elif req["op"] == "cancel":
                        r = by_dir.get(os.path.abspath(str(req.get("job_dir"))))
                        if r is not None:
                            kill(r, "cancelled")
                    else:
                        stop.append(1)
            now = time.monotonic()
            for r in list(running.values()):
                if r.deadline is not None and r.reason is None and now >= r.deadline:
                    kill(r, "timeout")
    finally:
        for r in list(running.values()):
            kill(r, "shutdown")
        for w in list(workers.values()):  # idle ones, and any that ended a job after EOF
            if w.pid not in running:
                try:
                    os.killpg(w.pid, signal_mod.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        while (running or workers) and time.monotonic() < deadline:
            reap()
            if running or workers:
                time.sleep(0.005)
        os.close(death_w)
        shutil.rmtree(code_cache, ignore_errors=True)
    return 0


def _serve_main(argv):
    on_eof, preload, fsync, reuse = "drain", [], True, 0
    it = iter(argv)
    for a in it:
        if a == "--no-fsync":
            fsync = False
        elif a == "--on-eof":
            on_eof = next(it, "")
        elif a.startswith("--on-eof="):
            on_eof = a.split("=", 1)[1]
        elif a == "--preload":
            preload += [m for m in next(it, "").split(",") if m]
        elif a.startswith("--preload="):
            preload += [m for m in a.split("=", 1)[1].split(",") if m]
        elif a == "--reuse" or a.startswith("--reuse="):
            n = a.split("=", 1)[1] if "=" in a else next(it, "")
            reuse = int(n) if n.isdigit() else -1
        else:
            on_eof = "?"
    if on_eof not in ("drain", "kill") or reuse < 0:
        sys.stderr.write(SERVE_USAGE)
        return 2
    return serve(on_eof, preload, fsync, reuse)


if __name__ == "__main__":  # at the end: the job server above must be defined first
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(_serve_main(sys.argv[2:]))
    sys.exit(main())
