"""The lifeline of a hither container, inside it (stdlib only, Python >= 3.6): the container's
stdin is the launcher's attach connection (OpenStdin + StdinOnce), which the kernel closes
when the launcher dies, even by SIGKILL; EOF on it ends the container's process 1, and with
it (the kernel empties the pid namespace) every process of the job. The job itself gets
/dev/null as stdin: it sees no input, as without the lifeline.

A one-shot container runs this file's source as ``python3 -c SOURCE RUNNER_PY JOB_DIR``:
it holds the lifeline, then runs the job directory's runner.py (the runtime, a zip) as
``__main__``. The warm
loop imports it (a copy in its control folder) and calls ``hold``.
"""
import os
import signal
import sys
import threading


def hold():
    """Move stdin (the lifeline) to a private descriptor, give fd 0 /dev/null, and watch the
    lifeline in a daemon thread: at EOF (or an error reading it) ``cut``. Returns the private
    descriptor (forked children should close it), or -1 when there is no stdin."""
    try:
        fd = os.dup(0)  # not inherited across exec: only this process watches it
    except OSError:
        return -1
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    t = threading.Thread(target=_watch, args=(fd,), name="hither-lifeline", daemon=True)
    t.start()
    return fd


def _watch(fd):
    import errno

    while True:
        try:
            data = os.read(fd, 4096)  # the launcher never writes: this blocks until EOF
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.EBADF:  # the job closed it (closerange): not a death
                return
            data = b""
        if not data:
            cut()


def cut():
    """The launcher is gone: end this process and every process of the job, now."""
    try:
        sys.stderr.write("hither: the process that started this container is gone; "
                         "stopping the job\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - nothing must keep this from ending
        pass
    if os.getpid() != 1:  # not the container's init (e.g. docker's --init, or pid=host)
        try:
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
        except OSError:
            pass
    os._exit(137)


def _run_runner(argv):
    """``RUNNER_PY JOB_DIR``: run runner.py (a zip with a ``__main__.py``) as ``python3
    RUNNER_PY JOB_DIR`` would: the zip is ``sys.path[0]``."""
    import runpy

    sys.argv = list(argv)
    sys.path[0] = os.path.abspath(argv[0])
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__" and sys.argv[0] == "-c" and len(sys.argv) > 1:
    hold()
    _run_runner(sys.argv[1:])
