"""RemoteJobHandler passes the core's JobHandler conformance suite, with a ComputeResource
serving in a thread of this process (each job still runs in a fork of the resource's job
server, in a folder of the resource's own) over the real MongoDB-protocol server and S3 on
loopback."""
from __future__ import annotations

import threading

import pytest

import hither as hi
from hither.testing.handler_conformance import JobHandlerConformance


class TestRemoteConformance(JobHandlerConformance):
    cancels_running = True
    supports_timeout = True
    max_seconds = 60.0

    @pytest.fixture
    def handler(self, db, store, tmp_path):
        cr = hi.ComputeResource(database=db, compute_resource_id="conformance", store=store, workers=3,
                                work_dir=str(tmp_path / "resource-jobs"), lease_seconds=10)
        t = threading.Thread(target=cr.run, daemon=True)
        t.start()
        jh = hi.RemoteJobHandler(database=db, compute_resource_id="conformance", store=store)
        yield jh
        jh.shutdown()
        cr.stop()
        t.join(30)
        assert not t.is_alive(), "the compute resource did not stop"
