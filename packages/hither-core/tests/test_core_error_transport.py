"""A job's exception arrives as itself on every handler (issue 22): an exception class whose
constructor takes other arguments than ``args`` (``TwoArgErr(msg, code)``), defined in the
program's ``__main__`` script, comes back with its type, args and attributes from the
DefaultJobHandler, a ParallelJobHandler worker and the outside path (a fresh runner process
and a job server); one that cannot be rebuilt is a ``JobError`` naming its type and message;
a traceback from a worker shows the source lines of a notebook cell's function."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

PROGRAM = textwrap.dedent('''
    import json, sys, threading
    import hither as hi
    from hither.plugins.interfaces import JobHandler


    class Blob:  # picklable, not JSON-able
        def __init__(self, v):
            self.v = v


    class TwoArgErr(Exception):
        def __init__(self, msg, code):
            super().__init__(msg)
            self.code = code
            self.blob = Blob(code)


    class Outside(JobHandler):
        """Runs each job through the outside path (job directory, runner process)."""
        name = "outside"
        crosses_machine = False
        containers_run_here = False
        needs_code_bundle = True
        supports_timeout = True

        def __init__(self, launcher):
            self.launcher = launcher

        def submit(self, job, inline):
            from hither.outside.path import run_outside
            job.report_running()
            threading.Thread(target=run_outside, args=(job, self.launcher)).start()

        def cancel(self, job):
            return False


    @hi.function("boom", "0.1")
    def boom(code):
        raise TwoArgErr("bad thing", code)


    @hi.function("local_boom", "0.1")
    def local_boom():
        class LocalErr(Exception):  # not importable anywhere: a JobError
            def __init__(self, msg, lock):
                super().__init__(msg)
                self.lock = lock
        raise LocalErr("made inside", threading.Lock())


    def handler(which):
        if which == "default":
            return hi.DefaultJobHandler()
        if which == "parallel":
            return hi.ParallelJobHandler(num_workers=1)
        if which == "subprocess":
            from hither.outside.path import SubprocessLauncher
            return Outside(SubprocessLauncher())
        from hither.outside.jobserver import JobServerLauncher
        return Outside(JobServerLauncher(capacity=1, reuse=True))


    if __name__ == "__main__":
        report = {}
        with hi.Config(job_handler=handler(sys.argv[1])):
            a, b = boom.run(code=7), local_boom.run()
        try:
            a.wait()
        except TwoArgErr as e:
            blob = getattr(e, "blob", None)
            report["a"] = [type(e).__module__, list(e.args), e.code,
                           type(blob).__name__, getattr(blob, "v", None), str(e)]
        except Exception as e:
            report["a"] = ["not itself", type(e).__name__, str(e)]
        try:
            b.wait()
        except hi.JobError as e:
            report["b"] = ["JobError", str(e)]
        except Exception as e:
            report["b"] = ["other", type(e).__name__, str(e)]
        print(json.dumps(report))
''')


def run_program(tmp_path, *args):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=100)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("handler", ["default", "parallel", "subprocess", "jobserver"])
def test_an_exception_with_other_constructor_args_arrives_as_itself(tmp_path, handler):
    report = run_program(tmp_path, handler)
    assert report["a"][:3] == ["__main__", ["bad thing"], 7], report
    if handler in ("default", "parallel"):  # pickled (same machine): any picklable attribute
        assert report["a"][3:] == ["Blob", 7, "bad thing"], report
    else:  # from a job directory: JSON only, never unpickled (it may come from a container)
        assert report["a"][3:] == ["NoneType", None, "bad thing"], report
    if handler == "default":  # in this process: the very exception
        assert report["b"] == ["other", "LocalErr", "made inside"], report
    else:  # not importable here, nor picklable: a JobError naming its type and message
        assert report["b"][0] == "JobError" and "LocalErr: made inside" in report["b"][1], report


def test_the_rebuild_without_a_job():
    """``from_error_info`` by itself: args and JSON-able attributes back, the constructor
    not called when it takes other arguments; an unknown class is a JobError."""
    from hither.errors import JobError
    from hither.models import ErrorInfo
    from hither.values.error_info import from_error_info, to_error_info

    info = to_error_info(TwoArg("msg here", 3))
    assert info.attrs_json == {"code": 3}
    exc = from_error_info(ErrorInfo(**json.loads(info.model_dump_json())))
    assert type(exc) is TwoArg and exc.args == ("msg here",) and exc.code == 3
    plain = from_error_info(to_error_info(KeyError("k")))
    assert type(plain) is KeyError and plain.args == ("k",)
    gone = from_error_info(ErrorInfo(type_module="no_such_module_22", type_name="E", message="m"))
    assert isinstance(gone, JobError) and "no_such_module_22.E: m" in str(gone)


class TwoArg(Exception):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


NOTEBOOK = textwrap.dedent('''
    import linecache, sys
    import hither as hi
    SRC = """
    @hi.function("cell_fn", "0.1")
    def cell_fn(x):
        y = x + 1
        raise ValueError("from the cell %d" % y)
    """
    fname = "/tmp/ipykernel_0/no-such-cell-22.py"   # as IPython names a cell: no such file
    linecache.cache[fname] = (len(SRC), None, SRC.splitlines(True), fname)
    exec(compile(SRC, fname, "exec"), globals())
    with hi.Config(job_handler=hi.ParallelJobHandler(num_workers=1)):
        j = cell_fn.run(x=1)
    try:
        j.wait()
    except ValueError as e:
        print(e.remote_traceback)
''')


def test_a_worker_traceback_shows_the_source_of_a_notebook_cell(tmp_path):
    script = tmp_path / "nb.py"
    script.write_text(NOTEBOOK)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100,
                       cwd=str(tmp_path), env={**os.environ, "HITHER_PROGRESS": "0"})
    assert p.returncode == 0, p.stderr
    assert 'no-such-cell-22.py", line 5, in cell_fn\n    raise ValueError("from the cell %d" % y)' \
        in p.stdout, p.stdout
