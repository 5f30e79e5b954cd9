"""The job server's job processes (forks of the server, see ``server``): running one
request's job directory (``job_process``) or, with ``--reuse``, further jobs of the same code
bundle one after another (``worker_process``). Stdlib-only, Python >= 3.8 (part of the
shipped runtime).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading

from .errors import flush_std, print_crash
from .run import run_job_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing costs ~20 ms at a bare interpreter's start
    from typing import Any, Dict, NoReturn, Optional


def reset_child_signals() -> None:
    """The signal dispositions of a job process: the defaults, not the server's."""
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def watch_server(death_r: int) -> None:
    """In a job process: kill its whole process group when the job server is gone (the
    death pipe, which only the server can write to, reaches end of file)."""
    def watch() -> None:
        try:
            while os.read(death_r, 512):
                pass
        except OSError:  # the job closed every descriptor (EBADF): stop watching
            return
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="hither-job-server-watch", daemon=True).start()


def _run_request(req: Dict[str, Any], code_cache: Optional[str]) -> int:
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


def _stdin_null() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)


def job_process(req: Dict[str, Any], code_cache: Optional[str]) -> NoReturn:
    """In the job process (forked): run one job directory; never returns."""
    code = 70
    try:
        _stdin_null()
        code = _run_request(req, code_cache)
    except BaseException:  # noqa: BLE001 - a crash of the runner itself
        print_crash()
    finally:
        flush_std()
        os._exit(code)


#: a reused job process ends after this many jobs, or when it holds this much more memory
#: than after its first job (what a job freed may stay with the process)
_REUSE_MAX_JOBS = 1000
_REUSE_MAX_GROWTH = 1 << 30


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def worker_process(req: Dict[str, Any], code_cache: Optional[str], ctl_r: int, ev_w: int) -> NoReturn:
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
                print_crash()
            if os.getpid() != me:  # a fork the job made returned here: it must not take jobs
                os._exit(code)
            jobs += 1
            flush_std()
            os.dup2(console[0], 1)
            os.dup2(console[1], 2)
            if os.environ != env0:
                os.environ.clear()
                os.environ.update(env0)
            os.chdir(cwd0)
            sys.path[:] = path0
            os.umask(umask0)
            reset_child_signals()
            signal.setitimer(signal.ITIMER_REAL, 0)  # an alarm the job set (or signal.alarm)
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
        print_crash()
    finally:
        flush_std()
        os._exit(code)
