"""A job's exception arrives from a container as itself (issue 22): an exception class whose
constructor takes other arguments (``CodedError(msg, code)``) comes back with its type, args
and attributes on the DefaultJobHandler and a ParallelJobHandler (from ``error.json``, never
unpickled: the container is not trusted with the host's process)."""
from __future__ import annotations

import pytest

import hither as hi

import ct_error_funcs as cef

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("handler", ["default", "parallel"])
def test_an_exception_with_other_constructor_args_arrives_as_itself(docker_image, handler):
    jh = hi.DefaultJobHandler() if handler == "default" else hi.ParallelJobHandler(1)
    try:
        with hi.Config(job_handler=jh, container=True):
            job = cef.ct_coded_fail.run(code=5)
        with pytest.raises(cef.CodedError) as ei:
            job.wait(120)
    finally:
        jh.shutdown()
    assert ei.value.args == ("refused in the box",) and ei.value.code == 5
    assert "ct_coded_fail" in (getattr(ei.value, "remote_traceback", "") or "")
