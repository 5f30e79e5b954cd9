"""hither-core's ContainerRunner conformance suite (hither.testing.container_conformance)
on the Docker runner against the real engine: one container per job, and warm containers
(hi.Config(container_options={"reuse": True}))."""
from __future__ import annotations

import pytest

import hither as hi
from hither.testing.container_conformance import ContainerRunnerConformance

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:hither function name .* is registered twice")]


class TestDockerCoreConformance(ContainerRunnerConformance):
    @pytest.fixture(autouse=True)
    def _close_runners(self):
        yield
        from hither.plugins.containers import close_runners

        close_runners()  # warm containers of one test do not outlive it

    @pytest.fixture(params=["cold", "warm"])
    def runner_name(self, request, docker_client):
        self.reuse = request.param == "warm"
        return "docker"

    @pytest.fixture
    def image(self, docker_image):
        return docker_image

    def config(self, runner_name, image, **kw):
        return hi.Config(container=image, container_engine=runner_name,
                         container_options={"reuse": self.reuse}, **kw)
