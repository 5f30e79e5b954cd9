"""The ContainerRunner conformance suite on the Docker runner, against the real Docker
Engine: one container per job, and warm containers (ContainerOptions(reuse=True))."""
from __future__ import annotations

import pytest

from hither_container.docker_runner import DockerRunner
from hither_container.testing import ContainerRunnerConformance


class TestDockerRunnerConformance(ContainerRunnerConformance):
    @pytest.fixture(params=["cold", "warm"])
    def make_runner(self, request, docker_client):
        warm = request.param == "warm"

        def make(options):
            return DockerRunner(options.model_copy(update={"reuse": warm}))

        return make

    @pytest.fixture
    def image(self, docker_image):
        return docker_image
