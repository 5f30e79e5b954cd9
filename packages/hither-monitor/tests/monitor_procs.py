"""Start and stop a real ``hither-monitor serve`` for the tests (a module of its own: the
tests import it by name, and every package's tests have a ``conftest``)."""
import os
import re
import subprocess
import sys
import threading
import time


class Served:
    """A running ``hither-monitor serve``: its URL and its process."""

    def __init__(self, proc, url, lines):
        self.proc, self.url, self.lines = proc, url, lines


def start_serve(*args, env=None, timeout=30.0):
    """Start ``hither-monitor serve --port 0 ARGS`` and wait for its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "hither_monitor.cli", "serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    lines = []
    deadline = time.monotonic() + timeout
    url = None

    def read():
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while time.monotonic() < deadline and url is None:
        for line in lines:
            m = re.search(r"open (http://\S+)", line)
            if m:
                url = m.group(1)
        if proc.poll() is not None and url is None:
            break
        time.sleep(0.05)
    if url is None:
        proc.kill()
        raise AssertionError(f"hither-monitor serve did not start: {''.join(lines)}")
    return Served(proc, url, lines)


def stop_serve(served):
    served.proc.terminate()
    try:
        served.proc.wait(10)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(10)
