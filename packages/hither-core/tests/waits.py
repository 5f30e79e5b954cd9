"""Waiting in hither-core's tests for what a job or process signals through a file."""
import os
import time


def wait_for_file(path, timeout=30.0):
    """The text of the file at ``path`` once it exists (a job writes its pid there, say);
    fails the test when it has not appeared within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)
    with open(path) as f:
        return f.read()
