"""A job's exception arrives from a compute resource as itself (issue 22): an exception class
whose constructor takes other arguments (``CodedError(msg, code)``) comes back with its type,
args and JSON-able attributes through the bus, never unpickled."""
from __future__ import annotations

import pytest

import hither as hi

import remote_error_funcs as ref

pytestmark = pytest.mark.timeout(120)


def test_an_exception_with_other_constructor_args_arrives_as_itself(serve, db, store):
    serve("resource", "--workers", "1")
    jh = hi.RemoteJobHandler(database=db, compute_resource_id="resource1", store=store)
    try:
        with hi.Config(job_handler=jh):
            job = ref.rt_coded_fail.run(code=17)
        with pytest.raises(ref.CodedError) as ei:
            job.wait(60)
    finally:
        jh.shutdown()
    err = ei.value
    assert type(err) is ref.CodedError and err.args == ("refused with a code",)
    assert err.code == 17 and err.detail == {"code": 17, "why": "refused with a code"}
    assert "rt_coded_fail" in (getattr(err, "remote_traceback", "") or "")
