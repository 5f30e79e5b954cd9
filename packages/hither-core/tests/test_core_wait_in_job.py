"""``hi.wait()`` called inside a job (issue 22) never hangs. In a job running in the program's
own process (DefaultJobHandler, inline in ``.run()`` or on the handler's thread) it raises
a ``HitherError`` saying why, which is that job's error; in a job running in a process of its
own (a ParallelJobHandler worker, the outside path's runner) it waits for the jobs that job
started there."""
import threading

import pytest

import hither as hi
from hither.plugins.interfaces import JobHandler

import wait_funcs as wf

pytestmark = pytest.mark.timeout(60)


def test_on_the_default_handler_inline_it_is_the_jobs_error():
    with hi.Config(job_handler=hi.DefaultJobHandler()):
        job = wf.waits_inside.run(x=1)
    with pytest.raises(hi.HitherError, match=r"hi.wait\(\) was called inside the job waits_inside"):
        job.wait(timeout=10)
    hi.wait(timeout=10)  # outside the job it still works


def test_on_the_default_handlers_thread_too(make_pjh):
    """A job that becomes ready later runs on the handler's own thread: the same error."""
    with hi.Config(job_handler=make_pjh(1)):
        first = wf.wait_plus_one.run(x=1)
    with hi.Config(job_handler=hi.DefaultJobHandler()):
        job = wf.waits_inside.run(x=first)
    with pytest.raises(hi.HitherError, match="it would wait for that job itself"):
        job.wait(timeout=20)
    assert threading.current_thread() is threading.main_thread()


def test_in_a_parallel_worker_it_waits_for_the_jobs_the_job_started(make_pjh):
    with hi.Config(job_handler=make_pjh(1)):
        alone = wf.waits_inside.run(x=1)
        starter = wf.starts_and_waits.run(x=4)
    assert alone.wait(timeout=30) == 2
    assert starter.wait(timeout=30) == 50


class _Outside(JobHandler):
    """Each job through the outside path: a job directory and a fresh runner process."""
    name = "outside"
    crosses_machine = False
    containers_run_here = False
    needs_code_bundle = True
    supports_timeout = True

    def submit(self, job, inline):
        from hither.outside.path import SubprocessLauncher, run_outside

        job.report_running()
        threading.Thread(target=run_outside, args=(job, SubprocessLauncher()), daemon=True).start()

    def cancel(self, job):
        return False


def test_in_a_runner_process_it_waits_for_the_jobs_the_job_started():
    with hi.Config(job_handler=_Outside()):
        alone = wf.waits_inside.run(x=1)
        starter = wf.starts_and_waits.run(x=4)
    assert alone.wait(timeout=40) == 2
    assert starter.wait(timeout=40) == 50


def test_the_stand_in_has_wait(monkeypatch):
    """Code run where hither is not installed (an image) gets the stand-in: its
    ``hi.wait()`` returns at once (such code starts no jobs)."""
    import importlib.util
    import sys

    from hither.runtime import standin

    real_find = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "hither")  # put back at the end of the test
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "hither" else real_find(name, *a))
    standin.install_stand_in()
    stand_in = sys.modules["hither"]
    assert stand_in.__hither_stand_in__
    assert stand_in.wait() is None and stand_in.wait(5) is None and stand_in.reset() is None
