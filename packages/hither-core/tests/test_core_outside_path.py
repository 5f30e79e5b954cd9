"""The steps of the outside path (``hither.outside.path``) that every leaving job takes:
``launch`` (a launcher's timeout, with or without the runner's own outcome), ``read_outcome``
(a result stored where the job ran stays a ``StoredResult`` unless download), and a
``ContainerRunner`` being the ``Launcher`` of the image its job directory names."""
from __future__ import annotations

import json
import os
from typing import List, Optional, Tuple

import numpy as np
import pytest

from hither.content.folder import ContentFolder
from hither.errors import ContainerError, JobTimeoutError
from hither.outside.documents import OUTPUTS, store_outputs
from hither.outside.jobdir import array_sink
from hither.outside.path import TIMEOUT_GRACE, grace, launch, launcher_label, read_outcome
from hither.plugins.interfaces import ContainerRunner, Launcher
from hither.runtime import ERROR, RESULT, encode_value, error_dict
from hither.values.refs import is_stored


class _Stopping(Launcher):
    """A launcher that stops every job at its timeout; ``writes`` an error.json first."""

    name = "stopping"

    def __init__(self, writes: bool) -> None:
        self.writes = writes
        self.timeouts: List[Optional[float]] = []

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        self.timeouts.append(timeout)
        if self.writes:
            with open(os.path.join(job_dir, ERROR), "w") as f:
                json.dump(error_dict(JobTimeoutError("the runner stopped itself")), f)
        raise JobTimeoutError("stopped")


def test_launch_adds_the_grace_and_says_who_wrote_the_timeout(tmp_path):
    quiet = _Stopping(writes=False)
    with pytest.raises(JobTimeoutError):
        launch(quiet, str(tmp_path), 10)
    assert quiet.timeouts == [10 + TIMEOUT_GRACE] and grace(None) is None
    told = _Stopping(writes=True)
    assert launch(told, str(tmp_path), 10) is None  # the runner's own outcome is there to read
    assert "runner stopped itself" in str(read_outcome(str(tmp_path)).error)


def _result_dir(path: str, value: object) -> str:
    os.makedirs(os.path.join(path, "arrays"))
    with open(os.path.join(path, RESULT), "w") as f:
        json.dump({"value": encode_value(value, array_sink(path, "result"))}, f)
    return path


def test_read_outcome_leaves_a_stored_result_in_the_store(tmp_path):
    folder = ContentFolder(str(tmp_path / "store"))
    big = np.arange(100_000, dtype="<f8")
    job_dir = _result_dir(str(tmp_path / "job"), {"big": big})
    assert store_outputs(job_dir, folder, inline_max_bytes=1024)
    assert os.path.exists(os.path.join(job_dir, OUTPUTS))
    kept = read_outcome(job_dir, 0, folder).value
    assert is_stored(kept)
    assert np.array_equal(read_outcome(job_dir, 0, folder, download=True).value["big"], big)
    assert np.array_equal(read_outcome(job_dir, 0).value["big"], big)  # no store: the runner's files


class _Recording(ContainerRunner):
    name = "recording"
    schemes = ("rec",)

    def __init__(self) -> None:
        super().__init__()
        self.runs: List[Tuple[str, str, Optional[float]]] = []

    @classmethod
    def is_available(cls) -> bool:
        return True

    def run(self, image: str, job_dir: str, timeout: Optional[float] = None) -> int:
        self.runs.append((image, job_dir, timeout))
        return 0


def test_a_container_runner_is_the_launcher_of_its_jobs_image(tmp_path):
    runner = _Recording()
    with open(tmp_path / "spec.json", "w") as f:
        json.dump({"container": "rec://img:1", "function_name": "f"}, f)
    assert isinstance(runner, Launcher)
    assert launch(runner, str(tmp_path), 3) == 0
    assert runner.runs == [("rec://img:1", str(tmp_path), 3 + TIMEOUT_GRACE)]
    assert launcher_label(runner) == "the recording container runner"
    with open(tmp_path / "spec.json", "w") as f:
        json.dump({"container": None}, f)
    with pytest.raises(ContainerError, match="names no container image"):
        runner.launch(str(tmp_path), None)
