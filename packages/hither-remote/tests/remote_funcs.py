"""Hither functions for hither-remote's tests (a module of their own: the resource imports
it from the job's code bundle)."""
import os
import time

import numpy as np

import hither as hi


@hi.function('rt_ones', '0.1.0')
def rt_ones(n):
    return np.ones(n)


@hi.function('rt_add', '0.1.0')
def rt_add(x, y):
    return x + y


@hi.function('rt_fail', '0.1.0')
def rt_fail(msg):
    raise ValueError(msg)


@hi.function('rt_sleep_pid', '0.1.0')
def rt_sleep_pid(t, pid_file, x=0):
    """Writes its pid to ``pid_file`` (a path on the test machine), then sleeps ``t``."""
    with open(pid_file, 'a') as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(t)
    return x


@hi.function('rt_talk', '0.1.0')
def rt_talk(text):
    print("said:", text)
    return len(text)


IMAGE = os.environ.get("HITHER_TEST_IMAGE", "hither-test/python-numpy:3.11")


@hi.function('rt_where', '0.1.0')
@hi.container('docker://' + IMAGE)
def rt_where(x, t=0):
    """Where it ran: network interfaces and host name; sleeps ``t``."""
    import socket

    print("running on", socket.gethostname())
    time.sleep(t)
    return {'nets': sorted(os.listdir('/sys/class/net')), 'host': socket.gethostname(), 'x': x}


@hi.function('rt_count', '0.1.0')
def rt_count(count_file, x, fail=False):
    """Appends a line to ``count_file`` (on the test machine) per run; returns ``x`` and a
    file holding ``x`` as text, or raises."""
    with open(count_file, 'a') as f:
        f.write("run\n")
    if fail:
        raise ValueError(f"failed on {x}")
    out = os.path.join(os.getcwd(), f"out-{x}.txt")
    with open(out, 'w') as f:
        f.write(f"x={x}")
    return {'x': x, 'array': np.full(50_000, float(x)), 'file': hi.File(out)}


@hi.function('rt_chatty', '0.1.0')
def rt_chatty(go_file, t=60):
    """Prints, waits until ``go_file`` exists (at most ``t`` s), prints again."""
    import sys

    print("first line")
    print("a line on stderr", file=sys.stderr)
    deadline = time.time() + t
    while time.time() < deadline and not os.path.exists(go_file):
        time.sleep(0.05)
    print("second line")
    return 2


@hi.function('rt_peek', '0.1.0')
def rt_peek(paths):
    """What a job can read of its surroundings: its environment, its parent's environment and
    command line, and the files (``/proc/<pid>/environ`` of other pids, a config file) in
    ``paths``; unreadable ones as the error's name."""
    import json

    def read(path):
        try:
            with open(path, 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError as exc:
            return type(exc).__name__
    ppid = os.getppid()
    seen = {'environ': json.dumps(dict(os.environ)), 'parent_environ': read(f'/proc/{ppid}/environ'),
            'parent_cmdline': read(f'/proc/{ppid}/cmdline'), 'own_cmdline': read('/proc/self/cmdline')}
    seen.update({p: read(p) for p in paths})
    return seen


@hi.function('rt_peek_in', '0.1.0')
@hi.container('docker://' + IMAGE)
def rt_peek_in(paths):
    """``rt_peek`` in a container of ``IMAGE``."""
    return rt_peek(paths)
