"""The messages between ``hi.ParallelJobHandler`` and its worker processes (``hither.local.worker``).

Each message is a small NamedTuple, pickled and framed (an 8-byte length, then the pickle)
over a socket by ``Channel``, which both sides use. Stdlib-only, so a worker starts fast.
The conversation::

    handler -> worker   Init(sys_path, owner_pid)          once, first
    handler -> worker   RunJob(...)                         a job (at most one prefetched)
    handler -> worker   CancelJob(job_id)                   skip a prefetched job
    handler -> worker   Stop()                              exit when idle
    worker  -> handler  JobDone(job_id, payload, paths, runtime_info)
    worker  -> handler  JobFailed(job_id, error_info, pickled_error, runtime_info)

Large array buffers travel out of band as files in shared memory (``hither.local.transfer``);
``paths`` name them.
"""
from __future__ import annotations

import pickle
import select
import socket
import struct
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple


class Init(NamedTuple):
    """First message to a new worker: the parent's import path and the pid that owns the
    worker (the worker dies when that process is gone)."""

    sys_path: List[str]
    owner_pid: int


class RunJob(NamedTuple):
    """Run ``function_ref`` (see ``hither.local.parallel.function_ref``; ``("id", identity)``
    for a function this worker was sent before, ``parallel.shipped_ref``) on the pickled kwargs."""

    job_id: str
    function_ref: Tuple[Any, ...]
    payload: bytes
    paths: List[str]
    no_resolve_input_files: bool
    cwd: str  # the submitting program's current folder at .run()


class CancelJob(NamedTuple):
    """Skip the prefetched job ``job_id`` (a running job is cancelled by killing the worker)."""

    job_id: str


class Ready(NamedTuple):
    """A new worker's first message: it has started and imported what it needs; a job's
    ``job_timeout`` counts from here, not from the worker's start-up."""


class Stop(NamedTuple):
    """Exit once the current job (if any) is done."""


class JobDone(NamedTuple):
    """A job's pickled result (``hither.local.transfer`` format) with its runtime info."""

    job_id: str
    payload: bytes
    paths: List[str]
    runtime_info: Dict[str, Any]


class JobFailed(NamedTuple):
    """A job's error: ``error_info`` holds the fields of ``hither.models.ErrorInfo``;
    ``pickled_error`` the exception itself when it pickles (else None)."""

    job_id: str
    error_info: Dict[str, Any]
    pickled_error: Optional[bytes]
    runtime_info: Optional[Dict[str, Any]]


_HEADER = struct.Struct("!Q")
_READ = 1 << 16
# on the wire a message is the plain tuple (kind, *fields): pickling a NamedTuple by its
# class costs about twice as much, and this is paid four times per job
_KINDS = (Init, RunJob, CancelJob, Stop, JobDone, JobFailed, Ready)
_KIND = {cls: i for i, cls in enumerate(_KINDS)}


def _encode(msg: Any) -> bytes:
    return pickle.dumps((_KIND[type(msg)],) + tuple(msg), protocol=5)


def _decode(data: Any) -> Any:
    t = pickle.loads(data)
    return tuple.__new__(_KINDS[t[0]], t[1:])


class Channel:
    """Framed messages over a connected socket. ``send_many`` writes several messages in one
    system call; reads are buffered, so one ``read_available`` call takes in every message
    that has arrived (fewer system calls than one message per read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, msg: Any) -> None:
        self.send_many((msg,))

    def send_many(self, msgs: Iterable[Any]) -> None:
        parts: List[bytes] = []
        for m in msgs:
            data = _encode(m)
            parts.append(_HEADER.pack(len(data)))
            parts.append(data)
        self.sock.sendall(b"".join(parts) if len(parts) > 2 else parts[0] + parts[1])

    def _take(self, limit: int = 1 << 30) -> List[Any]:
        """The complete messages in the buffer (at most ``limit``), removed from it."""
        out: List[Any] = []
        buf = self._buf
        start = 0
        while len(out) < limit and len(buf) - start >= _HEADER.size:
            (n,) = _HEADER.unpack_from(buf, start)
            end = start + _HEADER.size + n
            if len(buf) < end:
                break
            with memoryview(buf) as mv, mv[start + _HEADER.size:end] as part:
                out.append(_decode(part))
            start = end
        if start:
            del buf[:start]
        return out

    def _fill(self) -> None:
        """One read from the socket into the buffer; EOFError when the peer closed it."""
        want = _READ
        if len(self._buf) >= _HEADER.size:  # a large message: read the rest of it at once
            want = max(want, _HEADER.size + _HEADER.unpack_from(self._buf)[0] - len(self._buf))
        chunk = self.sock.recv(want)
        if not chunk:
            raise EOFError("the other end of the worker channel closed it")
        self._buf += chunk

    def read_available(self) -> List[Any]:
        """After the socket polled readable: the messages complete so far (maybe none)."""
        self._fill()
        return self._take()

    def drain(self) -> List[Any]:
        """Every message that can be had without waiting (once the peer has exited)."""
        try:
            while select.select([self.sock], [], [], 0)[0]:
                self._fill()
        except (EOFError, OSError):
            pass
        return self._take()

    def recv(self) -> Any:
        """The next message, waiting for it."""
        while True:
            msgs = self._take(1)
            if msgs:
                return msgs[0]
            self._fill()

    def poll(self) -> bool:
        """Whether a message can be received without waiting (EOFError once closed)."""
        if self._has_message():
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return False
        self._fill()
        return self._has_message()

    def _has_message(self) -> bool:
        buf = self._buf
        return len(buf) >= _HEADER.size and len(buf) >= _HEADER.size + _HEADER.unpack_from(buf)[0]
