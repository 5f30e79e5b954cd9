"""Console capture: what a job prints, collected per thread (``capture``) while it still
reaches the console in whole lines. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
import io
import sys
import threading
from contextlib import contextmanager

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


def start_capture(echo):
    """Begin collecting this thread's output; returns (stdout parts, stderr parts)."""
    if not isinstance(sys.stdout, _Tee) or not isinstance(sys.stderr, _Tee):
        with _install_lock:
            if not isinstance(sys.stdout, _Tee):
                sys.stdout = _Tee(sys.stdout, "out")
            if not isinstance(sys.stderr, _Tee):
                sys.stderr = _Tee(sys.stderr, "err")
    out, err = [], []
    try:  # unrolled: this runs for every job
        _local.out.append(_Capture(out, echo))
        _local.err.append(_Capture(err, echo))
    except AttributeError:  # this thread's first job
        _local.out = [_Capture(out, echo)]
        _local.err = [_Capture(err, echo)]
    return out, err


def end_capture():
    """End this thread's innermost capture; echo its last line if it has no newline."""
    out, err = _local.out.pop(), _local.err.pop()
    if out.pending or err.pending:
        for rec, stream in ((out, sys.stdout), (err, sys.stderr)):
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
    parts = start_capture(echo)
    try:
        yield parts
    finally:
        end_capture()

