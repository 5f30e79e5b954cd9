"""hither.testing.processes: whether a pid runs (a zombie does not), and the waits of handler tests."""
import os
import subprocess
import sys
import threading

import pytest

from hither.testing.processes import alive, wait_dead, wait_for_file, wait_for_pids


def test_alive_is_false_for_a_zombie_and_an_ended_process():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_dead([proc.pid], 15)  # ended, not yet reaped: a zombie
    assert os.path.exists(f"/proc/{proc.pid}") or sys.platform != "linux"
    proc.wait()
    assert not alive(proc.pid)
    assert alive(os.getpid())


def test_wait_dead_says_false_while_one_still_runs():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert wait_dead([proc.pid], 0.3) is False
    finally:
        proc.kill()
        proc.wait()
    assert wait_dead([proc.pid], 5)


def test_wait_for_pids_waits_for_content(tmp_path):
    path = tmp_path / "pids"
    path.write_text("")  # created, not yet written: not enough
    timer = threading.Timer(0.2, path.write_text, args=("12 34\n",))
    timer.start()
    try:
        assert wait_for_pids(str(path), 10) == [12, 34]
    finally:
        timer.cancel()


def test_the_waits_fail_naming_the_file_when_it_never_comes(tmp_path):
    missing = str(tmp_path / "never")
    with pytest.raises(AssertionError, match="never did not appear within 0.1 s"):
        wait_for_file(missing, 0.1)
    (tmp_path / "empty").write_text("")
    assert wait_for_file(str(tmp_path / "empty"), 0.1) == ""  # existing is enough
    with pytest.raises(AssertionError, match="got fewer than 1 pid"):
        wait_for_pids(str(tmp_path / "empty"), 0.1)


def test_wait_for_pids_waits_for_as_many_as_asked(tmp_path):
    path = tmp_path / "pids"
    path.write_text("12\n")
    timer = threading.Timer(0.2, lambda: path.write_text("12\n34\n"))
    timer.start()
    try:
        assert wait_for_pids(str(path), 10, count=2) == [12, 34]
    finally:
        timer.cancel()
