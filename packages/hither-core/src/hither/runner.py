"""The hither job runner: ``python -m hither.runner JOB_DIR`` (or ``python3 runner.py JOB_DIR``).

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
import socket
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
def encode_value(v, array_sink, file_encoder=None):
    """A JSON-able form of a hither value. ``array_sink(ndarray) -> ref`` stores an array;
    ``file_encoder(file) -> dict`` describes a File (default: its uri and path).

    Tagged forms (key ``"_hither"``): tuple, ndarray (ref), npscalar (dtype, hex bytes),
    file (uri, path), float (non-finite, as repr), dict (a dict that has a "_hither" key).
    """
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if math.isfinite(v) else {TAG: "float", "repr": repr(v)}
    if t is list:
        return [encode_value(x, array_sink, file_encoder) for x in v]
    if t is tuple:
        return {TAG: "tuple", "items": [encode_value(x, array_sink, file_encoder) for x in v]}
    if t is dict:
        items = {k: encode_value(x, array_sink, file_encoder) for k, x in v.items()}
        return {TAG: "dict", "items": items} if TAG in v else items
    if t.__module__ == "numpy":
        import numpy as np

        if isinstance(v, np.ndarray):
            return {TAG: "ndarray", "ref": array_sink(v)}
        if isinstance(v, np.generic):
            return {TAG: "npscalar", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    wire = getattr(t, "__hither_wire__", None)
    if wire is not None:  # a value already in the wire format (a result held in a store)
        return wire(v)
    if hasattr(v, "__fspath__") and hasattr(v, "uri"):  # hither.File or the runner's stand-in
        if file_encoder is not None:
            return file_encoder(v)
        return {TAG: "file", "uri": v.uri, "path": getattr(v, "path", None)}
    for base in (bool, int, float, str):
        if isinstance(v, base):
            return encode_value(base(v), array_sink, file_encoder)
    raise TypeError("cannot encode a value of type %s.%s for hither" % (t.__module__, t.__qualname__))


def decode_value(d, array_source, file_decoder=None):
    """Inverse of ``encode_value``: ``array_source(ref) -> ndarray``; ``file_decoder(dict)``."""
    t = type(d)
    if t is list:
        return [decode_value(x, array_source, file_decoder) for x in d]
    if t is not dict:
        return d
    tag = d.get(TAG)
    if tag is None:
        return {k: decode_value(x, array_source, file_decoder) for k, x in d.items()}
    if tag == "tuple":
        return tuple(decode_value(x, array_source, file_decoder) for x in d["items"])
    if tag == "dict":
        return {k: decode_value(x, array_source, file_decoder) for k, x in d["items"].items()}
    if tag == "ndarray":
        return array_source(d["ref"])
    if tag == "npscalar":
        import numpy as np

        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=np.dtype(d["dtype"]))[0]
    if tag == "float":
        return float(d["repr"])
    if tag == "file":
        return file_decoder(d) if file_decoder is not None else d
    raise ValueError("unknown hither wire tag %r" % (tag,))


# ------------------------------------------------------------------ console capture
_local = threading.local()
_install_lock = threading.Lock()


class _Tee(io.TextIOBase):
    """Stands in for sys.stdout/stderr: output reaches the original stream and, while the
    current thread runs a job, that job's record too (other threads never mix in)."""

    def __init__(self, original, slot):
        self._original = original
        self._slot = slot

    def write(self, s):
        stack = getattr(_local, self._slot, None)
        if stack:
            buf, echo = stack[-1]
            buf.append(s)
            if not echo:
                return len(s)
        return self._original.write(s)

    def flush(self):
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


@contextmanager
def capture(echo=True):
    """Collect what this thread prints inside the block: yields (stdout parts, stderr parts)."""
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
        stack.append((buf, echo))
    try:
        yield out, err
    finally:
        _local.out.pop()
        _local.err.pop()


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


def call_function(fn, kwargs, handler="", echo=True):
    """Call ``fn(**kwargs)`` capturing console output.

    Returns (result, exception or None, traceback text, runtime info dict); never raises
    for an error of the function (even SystemExit), except KeyboardInterrupt.
    """
    ri = {"host": _HOST, "pid": os.getpid(), "handler": handler, "start_time": time.time()}
    result, error, tb_text = None, None, ""
    with capture(echo) as (out, err):
        try:
            result = fn(**kwargs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the job's error is data here
            error = exc
            tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
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
class _StandInFile(object):
    """``hi.File`` where hither is not installed (inside a bare container image)."""

    def __init__(self, path=None, uri=None):
        self.path = os.path.abspath(path) if path is not None else None
        self._uri = uri

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

    mod.Config = Config
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
def _write_json_atomic(path, data):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_hashing(src, dest):
    """Copy ``src`` to ``dest`` and return the sha1 of what was copied."""
    import hashlib

    h = hashlib.sha1()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 22), b""):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _returned_file_encoder(job_dir):
    """Encodes each File a job returns as a copy in ``outputs/<sha1>/<name>`` of the job
    directory, with its sha1: the caller gets this content, wherever the job ran and
    whatever happens to the original path afterwards."""
    counter = [0]

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
        counter[0] += 1
        tmp = os.path.join(job_dir, "outputs", ".partial-%d" % counter[0])
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        digest = _copy_hashing(src, tmp)
        rel = "outputs/%s/%s" % (digest, name)
        os.makedirs(os.path.join(job_dir, "outputs", digest), exist_ok=True)
        os.replace(tmp, os.path.join(job_dir, rel))
        return {TAG: "file", "uri": "sha1://%s/%s" % (digest, name), "local": rel, "sha1": digest}

    return encode


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
            if os.getpgrp() == os.getpid():
                import signal

                os.killpg(os.getpid(), signal.SIGKILL)
            os._exit(124)


def _finite_timeout(value):
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    return t if t > 0 and math.isfinite(t) else None


def run_job_dir(job_dir):
    """Run the job in ``job_dir`` and write its outputs there. Returns the exit code."""
    job_dir = os.path.abspath(job_dir)
    try:
        with open(os.path.join(job_dir, "spec.json")) as f:
            spec = json.load(f)
        with open(os.path.join(job_dir, "args.json")) as f:
            args_data = json.load(f)
    except (OSError, ValueError) as exc:
        sys.stderr.write("hither runner: %s is not a usable job directory: %s\n" % (job_dir, exc))
        return 3
    _install_stand_in()
    ri = {"host": _HOST, "pid": os.getpid(), "handler": spec.get("handler", ""),
          "start_time": time.time()}
    watchdog = None
    timeout = _finite_timeout(spec.get("timeout"))
    if timeout is not None:
        watchdog = _Watchdog(job_dir, timeout, dict(ri, function_name=spec.get("function_name")))
        watchdog.start()
    try:
        code_dir = os.path.join(job_dir, "code")
        with zipfile.ZipFile(os.path.join(job_dir, "code.zip")) as z:
            z.extractall(code_dir)
        fn = load_job_function(spec, code_dir)
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
    result, error, tb_text, ri2 = call_function(fn, kwargs, spec.get("handler", ""))
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
        sys.stderr.write("usage: python -m hither.runner JOB_DIR\n")
        return 2
    return run_job_dir(argv[0])


if __name__ == "__main__":
    sys.exit(main())
