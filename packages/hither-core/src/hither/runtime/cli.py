"""The runtime's command line: ``JOB_DIR`` (run one job directory) or ``--serve [--on-eof
drain|kill] [--preload MOD,...] [--no-fsync] [--reuse N]`` (the job server). Run as
``python3 runner.py ...`` (the shipped zip), ``python -m hither.runtime ...`` or
``python -m hither.runner ...``. Exit codes: those of ``run_job_dir`` (0, 3) and of
``serve`` (0); 2 for a usage error. Stdlib-only, Python >= 3.8 (part of the shipped runtime).
"""
from __future__ import annotations

import sys

from .run import run_job_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import List, Optional, Sequence, Tuple

USAGE = "usage: python -m hither.runtime JOB_DIR\n"
SERVE_USAGE = ("usage: python -m hither.runtime --serve [--on-eof drain|kill] [--preload MOD,...] [--no-fsync]"
               " [--reuse N]\n"
               "       then one job directory (or JSON request) per line on stdin\n")


def parse_serve_args(argv: Sequence[str]) -> Optional[Tuple[str, List[str], bool, int]]:
    """``(on_eof, preload, fsync, reuse)`` from the options after ``--serve``; None if bad."""
    on_eof, fsync, reuse = "drain", True, 0
    preload: List[str] = []
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
        return None
    return on_eof, preload, fsync, reuse


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"]:
        options = parse_serve_args(argv[1:])
        if options is None:
            sys.stderr.write(SERVE_USAGE)
            return 2
        from .server import serve  # only the server needs it: a job run does not compile it

        return serve(*options)
    if len(argv) != 1:
        sys.stderr.write(USAGE)
        return 2
    return run_job_dir(argv[0])
