"""The JobHandler conformance suite on hither-core's own handlers."""
from __future__ import annotations

import pytest

import hither as hi
from hither.testing.handler_conformance import JobHandlerConformance


class TestDefaultHandlerConformance(JobHandlerConformance):
    cancels_running = False  # an in-process job cannot be stopped safely
    supports_timeout = False

    @pytest.fixture
    def handler(self):
        return hi.DefaultJobHandler()


class TestParallelHandlerConformance(JobHandlerConformance):
    @pytest.fixture
    def handler(self):
        return hi.ParallelJobHandler(2)
