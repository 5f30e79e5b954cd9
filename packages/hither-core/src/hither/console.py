"""Capture of a job's stdout/stderr while still showing it on the console.

A proxy replaces ``sys.stdout``/``sys.stderr`` once; writes always reach the original stream
and, while the *current thread* runs a job, also that job's buffer. Other threads' output
is never mixed into a job's record.
"""
from __future__ import annotations

import io
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

_local = threading.local()
_install_lock = threading.Lock()


class _Tee(io.TextIOBase):
    def __init__(self, original: Any, slot: str) -> None:
        self._original = original
        self._slot = slot

    def write(self, s: str) -> int:
        bufs = getattr(_local, self._slot, None)
        if bufs:
            buf, echo = bufs[-1]
            buf.append(s)
            if not echo:
                return len(s)
        return self._original.write(s)

    def flush(self) -> None:
        self._original.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _install() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout, "out")
        if not isinstance(sys.stderr, _Tee):
            sys.stderr = _Tee(sys.stderr, "err")


@contextmanager
def capture(echo: bool = True) -> Iterator[Tuple[List[str], List[str]]]:
    """Collect what this thread prints inside the block; yields (stdout parts, stderr parts)."""
    if not isinstance(sys.stdout, _Tee) or not isinstance(sys.stderr, _Tee):
        _install()
    out: List[str] = []
    err: List[str] = []
    for slot, buf in (("out", out), ("err", err)):
        stack: Optional[list] = getattr(_local, slot, None)
        if stack is None:
            stack = []
            setattr(_local, slot, stack)
        stack.append((buf, echo))
    try:
        yield out, err
    finally:
        _local.out.pop()
        _local.err.pop()
