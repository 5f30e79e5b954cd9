"""The event log's writer process: batches of plain transitions in on its standard input,
rows out to the SQLite log; a warning or its giving up told back on its standard output.

A program that records jobs starts one (``hither.events.recorder``), so that folding rows,
JSON and SQLite never hold the program's GIL. It runs ``python -I -S`` with ``hither`` as a
bare namespace (:data:`BOOT`): it imports the standard library and ``hither.events`` only,
starts in a few milliseconds, and no ``sitecustomize``, ``PYTHON*`` variable or site
package of the program changes it. It ends when its input closes (the program exited,
was killed, or stopped recording), after writing what it was given.

Frames on its input: a 4-byte big-endian length, then ``marshal`` data. The first frame is
``(path, keep_days, run_row, exit_wait)``; each later one a list of items as
``hither.events.folder`` describes, and the last may be a number: the seconds its exit may
retry a locked log. Lines on its output: ``W<TAB>message`` (a warning,
the program logs it) and ``S<TAB>message`` (recording stopped, the program logs it and
stops recording).
"""
from __future__ import annotations

import marshal
import os
import select
import struct
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List, Tuple

_HEADER = struct.Struct(">I")
IDLE = 0.01  # seconds without a new batch after which what was fed is written

#: the command line's program: ``hither`` as a bare namespace over the folder in argv[1]
BOOT = ("import sys, types; m = types.ModuleType('hither'); m.__path__ = [sys.argv[1]]; "
        "sys.modules['hither'] = m; from hither.events.sidecar import main; sys.exit(main())")


def frame(payload: Any) -> bytes:
    """``payload`` (plain values) as one frame."""
    data = marshal.dumps(payload)
    return _HEADER.pack(len(data)) + data


class Frames:
    """Frames out of a byte stream read in pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def push(self, data: bytes) -> Iterator[Any]:
        buf = self._buf
        buf += data
        at = 0
        while len(buf) - at >= 4:
            (n,) = _HEADER.unpack_from(buf, at)
            if len(buf) - at - 4 < n:
                break
            yield marshal.loads(bytes(buf[at + 4:at + 4 + n]))
            at += 4 + n
        del buf[:at]


def _say(kind: str, message: str) -> None:
    try:
        os.write(1, f"{kind}\t{' '.join(message.split())}\n".encode("utf-8", "replace"))
    except OSError:  # the program is gone: nobody to tell
        pass


def _read_config(fd: int, frames: Frames) -> Tuple[Tuple[Any, ...], List[Any]]:
    """The first frame, and the frames read with it."""
    while True:
        data = os.read(fd, 65536)
        if not data:
            raise EOFError
        got: List[Any] = list(frames.push(data))
        if got:
            return tuple(got[0]), got[1:]


def main() -> int:
    """Write what comes in until the input ends; 0, or 1 when recording stopped."""
    from hither.events.folder import INTERVAL, LogFolder
    from hither.events.store import LogUnavailable

    fd = 0
    frames = Frames()
    try:
        (path, keep, run, exit_wait), more = _read_config(fd, frames)
    except (EOFError, OSError, ValueError, TypeError):
        return 0
    folder = LogFolder(Path(path), float(keep), tuple(run), warn=lambda m: _say("W", m))
    try:
        exit_wait = _serve(fd, frames, folder, INTERVAL, exit_wait, more)
        deadline = time.monotonic() + float(exit_wait)
        while folder.pending() and time.monotonic() < deadline:  # another program holds the lock
            time.sleep(0.02)
            folder.tick(time.time(), last=True)
        if folder.pending():
            _say("W", f"hither could not record the last {folder.pending()} jobs to {path} "
                      "(it was locked or full at exit)")
        return 0
    except LogUnavailable as exc:
        why = str(exc)
    except Exception as exc:  # never a traceback on the program's terminal
        why = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        folder.close()
    _say("S", f"hither stops recording jobs to {path}: {why} (set HITHER_MONITOR_DB to a writable "
              "file, or HITHER_MONITOR=0 to turn this off)")
    return 1


def _serve(fd: int, frames: Frames, folder: Any, interval: float, exit_wait: float, more: List[Any]) -> float:
    """Feed the folder until the input ends; write every ``interval`` seconds while
    batches come in, and as soon as they pause. Returns the seconds the exit may wait for
    a locked log (a last frame ``(None, seconds)`` says)."""
    folder.tick(time.time())  # a prune that is due
    next_write = time.monotonic() + interval
    fed = False

    def feed(got: Any) -> None:
        nonlocal exit_wait, fed
        for items in got:
            if type(items) is float:
                exit_wait = items
            else:
                folder.feed(items)
                fed = True
    feed(more)
    while True:
        wait = max(0.0, next_write - time.monotonic()) if not fed else IDLE
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            data = os.read(fd, 1 << 20)
            if not data:
                folder.tick(time.time(), last=True)
                return exit_wait
            feed(frames.push(data))
        if (fed and not ready) or time.monotonic() >= next_write:
            folder.tick(time.time())
            fed = False
            next_write = time.monotonic() + interval


if __name__ == "__main__":
    sys.exit(main())
