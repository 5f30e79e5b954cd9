"""A ParallelJobHandler worker process: ``python -m hither.local.worker FD``.

Speaks ``hither.local.messages`` over a socket: receives jobs (function reference, pickled
arguments), runs them one at a time, sends back the pickled result or the error, with
runtime info. Exits when the socket closes. Started with subprocess (never fork) so the
parent's threads and locks don't leak in, in a session of its own (the terminal's Ctrl-C
does not reach it; its jobs' processes share its process group, which the handler kills);
it dies, with that group, when its owner process dies.
"""
from __future__ import annotations

import collections
import importlib
import importlib.util
import os
import pickle
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

from hither.local import transfer
from hither.local import messages as P
# hither modules that import neither numpy nor pydantic: a worker starts fast and imports
# numpy only when a job's arguments hold arrays
from hither.local.execution import check_result
from hither.runtime import become_subreaper, call_function, kill_leftovers
from hither.values.grammar import prepare_kwargs

_functions: Dict[Any, Callable[..., Any]] = {}
#: code identity -> the reference that brought it (the handler sends each once per worker)
_shipped: Dict[str, Tuple[Any, ...]] = {}
#: (module, qualname) -> the code identity this worker last loaded it under
_loaded: Dict[Tuple[str, str], str] = {}


def _with_filename(code: Any, filename: str) -> Any:
    consts = tuple(_with_filename(c, filename) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def load_function(ref: Tuple[Any, ...]) -> Callable[..., Any]:
    """The raw function for a reference made by ``ParallelJobHandler.function_ref``: the
    code the caller has (its code identity is the reference's last item)."""
    fn = _functions.get(ref)
    if fn is not None:
        return fn
    if ref[0] == "id":
        full = _shipped.get(ref[1])
        if full is None:
            raise LookupError(f"the handler named code identity {ref[1]} that this worker was "
                              "never sent (a bug in hither: please report it)")
        obj: Any = load_function(full)
    elif ref[0] == "val":
        import cloudpickle

        obj = cloudpickle.loads(ref[1])
        raw = getattr(obj, "raw", obj)
        if ref[2] and hasattr(raw, "__code__"):
            # cloudpickle drops the file name: restore it so tracebacks show source lines
            raw.__code__ = _with_filename(raw.__code__, ref[2])
    else:
        obj = _import_for(ref[1], ref[2], ref[3], ref[4])
    obj = getattr(obj, "raw", obj)  # a HitherFunction: call the function it wraps
    _functions[ref] = obj
    return obj


def _import_for(module: str, qualname: str, path: str, identity: str) -> Any:
    """``module``.``qualname``, the module reloaded when this worker loaded the function
    before under another code identity (the caller reloaded or edited it since)."""
    mod = sys.modules.get(module)
    before = _loaded.get((module, qualname))
    _loaded[(module, qualname)] = identity
    if mod is not None and before is not None and before != identity:
        mod = importlib.reload(mod)
    elif mod is None:
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
    return obj


def _send_error(exc: BaseException, fn_name: str) -> BaseException:
    """What the caller sees when a checked result cannot be sent back (e.g. pickling)."""
    return TypeError(f"the result of {fn_name} could not be sent back from the worker: "
                     f"{type(exc).__name__}: {exc}")


def _safe_error_dict(error: BaseException, tb_text: str) -> Dict[str, Any]:
    from hither.runtime import error_dict

    try:
        return error_dict(error, tb_text)
    except BaseException as exc:  # noqa: BLE001 - e.g. an exception whose __str__ raises
        t = type(error)
        return {"type_module": t.__module__, "type_name": t.__qualname__,
                "message": f"(the error's message could not be read: {type(exc).__name__})",
                "args_json": None, "traceback": tb_text}


def run_one(conn: P.Channel, msg: P.RunJob) -> None:
    """Run one job and send its outcome; never raises for anything the job or its result
    does (the worker must outlive a bad job)."""
    try:
        if msg.cwd != os.getcwd():
            os.chdir(msg.cwd)
    except OSError as exc:
        err = _safe_error_dict(exc, "")
        err["message"] = (f"the job runs in the folder the program was in at .run(), {msg.cwd!r}, "
                          f"but the worker (pid {os.getpid()}) cannot enter it: {exc.strerror}")
        _send(conn, P.JobFailed(msg.job_id, err, None, None))
        return
    try:
        fn = load_function(msg.function_ref)
        kwargs = transfer.loads(msg.payload, msg.paths, unlink=False)
        if not msg.no_resolve_input_files:
            kwargs = prepare_kwargs(kwargs, False)
    except BaseException as exc:  # noqa: BLE001
        err = _safe_error_dict(exc, traceback.format_exc())
        err["message"] = (f"the worker (pid {os.getpid()}) could not load the job's function or "
                          f"arguments: {type(exc).__name__}: {err['message']}")
        _send(conn, P.JobFailed(msg.job_id, err, None, None))
        return
    result, error, tb_text, ri = call_function(fn, kwargs, "parallel")
    del kwargs
    if error is None:
        fn_name = getattr(fn, "__qualname__", "the job")
        error = check_result(result, None, fn_name)
        if error is not None:
            tb_text = ""
    if error is None:
        try:
            data, out_paths = transfer.dumps(result, owner=_owner_pid)
        except BaseException as exc:  # noqa: BLE001 - any failure here is the job's error
            error = _send_error(exc, fn_name)
            tb_text = traceback.format_exc()
        else:
            del result
            _send(conn, P.JobDone(msg.job_id, data, out_paths, ri))
            return
    del result
    ri["status"] = "error"
    _send(conn, P.JobFailed(msg.job_id, _safe_error_dict(error, tb_text), _pickled_error(error), ri))


def _pickled_error(error: BaseException) -> Optional[bytes]:
    """The job's exception pickled: as itself where that round-trips, else as its class's
    name, args and attributes (``TwoArgErr(msg, code)``); None when neither pickles (the
    error's description then rebuilds it by name, or as a ``JobError``)."""
    from hither.runtime import pickle_exception

    try:
        data = pickle.dumps(error)
        pickle.loads(data)
        return data
    except BaseException:  # noqa: BLE001 - not every exception pickles as itself
        pass
    try:
        return pickle_exception(error)
    except BaseException:  # noqa: BLE001 - args or attributes that do not pickle
        return None


def _send(conn: P.Channel, message: Any) -> None:
    """Send a job's outcome once every process the job started has ended: the job's
    processes are gone when the caller sees it finish (``hither.runtime.kill_leftovers``: this
    worker's children, orphans of the job's processes included as it is their subreaper,
    and its process group; one system call when the job left nothing)."""
    kill_leftovers()
    conn.send(message)


# ------------------------------------------------------------------ dying with the owner
_owner_pid = 0
_PR_SET_PDEATHSIG = 1


def _die_with_group() -> None:
    """End this worker and every process its jobs started (its process group)."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    finally:
        os._exit(70)


def watch_owner(owner: int) -> None:
    """Die (with the job's processes) when ``owner`` is gone: on Linux at once through
    PR_SET_PDEATHSIG, which wakes the watchdog thread through the signal wakeup pipe;
    anywhere by the watchdog seeing this process re-parented (getppid changes)."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # a Python-level handler, so the C handler writes to the wakeup pipe; its own
            # body does nothing (the main thread may be busy in a job)
            signal.signal(signal.SIGUSR2, lambda *_: None)
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGUSR2), 0, 0, 0)
        except (OSError, AttributeError, ValueError):
            pass  # the watchdog's polling still applies

    def watchdog() -> None:
        while True:
            if os.getppid() != owner:
                _die_with_group()
            select.select([r], [], [], 0.25)
            try:
                os.read(r, 512)
            except BlockingIOError:
                pass

    os.set_blocking(r, False)
    if os.getppid() != owner:  # the owner died before the death signal was armed
        _die_with_group()
    threading.Thread(target=watchdog, name="hither-owner-watchdog", daemon=True).start()


def main() -> None:
    global _owner_pid
    conn = P.Channel(socket.socket(fileno=int(sys.argv[1])))
    init: P.Init = conn.recv()
    sys.path[:] = init.sys_path
    _owner_pid = init.owner_pid
    watch_owner(init.owner_pid)
    become_subreaper()  # orphans of a job's processes come to this worker, which kills them
    conn.send(P.Ready())  # the first job's job_timeout counts from here
    queue: "collections.deque[Any]" = collections.deque()
    cancelled = set()
    while True:
        try:
            if not queue:
                queue.append(conn.recv())
            while conn.poll():  # take in cancellations of prefetched jobs before starting one
                queue.append(conn.recv())
        except (EOFError, OSError):
            return
        for m in [m for m in queue if type(m) is P.CancelJob]:
            cancelled.add(m.job_id)
            queue.remove(m)
        if not queue:
            continue
        msg = queue.popleft()
        if type(msg) is P.Stop:
            return
        ref = msg.function_ref
        if ref[0] != "id":  # kept as it arrives (even for a job skipped): later jobs of the
            _shipped.setdefault(ref[-1], ref)  # same identity name only it (refs.shipped_ref)
        if msg.job_id in cancelled:
            cancelled.discard(msg.job_id)
            continue
        run_one(conn, msg)


if __name__ == "__main__":
    main()
