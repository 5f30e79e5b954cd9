"""hither-core's JobHandler conformance suite on the SlurmJobHandler: local pilots and a
real single-node Slurm (the ``handler`` fixture of conftest.py runs both)."""
from __future__ import annotations

from hither.testing.handler_conformance import JobHandlerConformance


class TestSlurmHandlerConformance(JobHandlerConformance):
    cancels_running = True
    supports_timeout = True
    max_seconds = 180.0
