"""A ParallelJobHandler worker process: ``python -m hither._worker FD``.

Receives (job id, function reference, pickled arguments) over a socket, runs jobs one at a
time, sends back the pickled result or the error, with runtime info. Exits when the socket
closes. Started with subprocess (never fork) so the parent's threads and locks don't leak in.
"""
from __future__ import annotations

import collections
import importlib
import importlib.util
import os
import pickle
import socket
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, Tuple

_functions: Dict[Any, Callable[..., Any]] = {}


def _with_filename(code: Any, filename: str) -> Any:
    consts = tuple(_with_filename(c, filename) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def load_function(ref: Tuple[Any, ...]) -> Callable[..., Any]:
    """The raw function for a reference made by ``ParallelJobHandler.function_ref``."""
    fn = _functions.get(ref)
    if fn is not None:
        return fn
    if ref[0] == "val":
        import cloudpickle

        obj: Any = cloudpickle.loads(ref[1])
        raw = getattr(obj, "raw", obj)
        if ref[2] and hasattr(raw, "__code__"):
            # cloudpickle drops the file name: restore it so tracebacks show source lines
            raw.__code__ = _with_filename(raw.__code__, ref[2])
    else:
        _, module, qualname, path = ref
        mod = sys.modules.get(module)
        if mod is None:
            try:
                mod = importlib.import_module(module)
            except ImportError:
                if not path or not os.path.exists(path):
                    raise
                # e.g. a test module imported by path in the parent: load it the same way
                spec = importlib.util.spec_from_file_location(module, path)
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules[module] = mod
                spec.loader.exec_module(mod)
        obj = mod
        for part in qualname.split("."):
            obj = getattr(obj, part)
    obj = getattr(obj, "raw", obj)  # a HitherFunction: call the function it wraps
    _functions[ref] = obj
    return obj


def run_one(conn: Connection, msg: Tuple[Any, ...]) -> None:
    # only stdlib-only hither modules here: a worker starts fast and imports numpy only
    # when a job's arguments hold arrays
    from hither import transfer
    from hither.runner import call_function, error_dict

    _, job_id, ref, payload, paths, no_resolve = msg
    try:
        fn = load_function(ref)
        kwargs = transfer.loads(payload, paths, unlink=False)
        if not no_resolve:
            from hither.values import prepare_kwargs

            kwargs = prepare_kwargs(kwargs, False)
    except BaseException as exc:  # noqa: BLE001
        err = error_dict(exc)
        err["message"] = (f"the worker (pid {os.getpid()}) could not load the job's function or "
                          f"arguments: {type(exc).__name__}: {exc}")
        conn.send(("err", job_id, err, None, None))
        return
    result, error, tb_text, ri = call_function(fn, kwargs, "parallel")
    del kwargs
    if error is None:
        from hither.values import scan

        try:  # a clear TypeError naming the part, rather than a pickling error
            scan(result, "the result", allow_jobs=False)
        except TypeError as exc:
            error, tb_text, result = exc, traceback.format_exc(), None
    if error is None:
        try:
            data, out_paths = transfer.dumps(result)
        except BaseException as exc:  # noqa: BLE001
            error, tb_text = exc, traceback.format_exc()
        else:
            conn.send(("ok", job_id, data, out_paths, ri))
            return
    try:
        pickled_exc = pickle.dumps(error)
        pickle.loads(pickled_exc)
    except BaseException:  # noqa: BLE001 - not every exception pickles; the info suffices
        pickled_exc = None
    ri["status"] = "error"
    conn.send(("err", job_id, error_dict(error, tb_text), pickled_exc, ri))


def main() -> None:
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    conn = Connection(os.dup(sock.fileno()))
    sock.close()
    init = conn.recv()
    sys.path[:] = init["sys_path"]
    queue: "collections.deque[Tuple[Any, ...]]" = collections.deque()
    cancelled = set()
    while True:
        try:
            if not queue:
                queue.append(conn.recv())
            while conn.poll():  # take in cancellations of prefetched jobs before starting one
                queue.append(conn.recv())
        except (EOFError, OSError):
            return
        for m in [m for m in queue if m[0] == "cancel"]:
            cancelled.add(m[1])
            queue.remove(m)
        if not queue:
            continue
        msg = queue.popleft()
        if msg[0] == "exit":
            return
        if msg[1] in cancelled:
            cancelled.discard(msg[1])
            continue
        run_one(conn, msg)


if __name__ == "__main__":
    main()
