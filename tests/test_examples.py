"""The FAQ's core examples and the quickstart demo, run as written (as scripts, in fresh
interpreters: the FAQ scripts have no ``if __name__ == '__main__'`` guard, so this also
proves workers never re-run the user's script)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name: str, tmp_path, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra_env)
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_faq_parallel_example(tmp_path):
    out = run_example("parallel_example.py", tmp_path)
    assert out.count("Results:") == 1, "a worker re-ran the __main__ script:\n" + out
    assert "Results: [0, 1, 4, 9, 16, 25, 36, 49]" in out
    elapsed = float(out.split("Elapsed time:")[1].split()[0])
    assert elapsed < 6, f"8 jobs of 1 s on 4 workers took {elapsed} s: not parallel"


def test_faq_linear_algebra_pipeline_on_the_host(tmp_path):
    out = run_example("linear_algebra_pipeline.py", tmp_path)
    assert "x = [16 25]" in out and "B A^-1 = [16. 25.]" in out


def test_faq_run_by_name(tmp_path):
    assert 'hi.run("add", x=1, y=2) -> 3' in run_example("run_by_name.py", tmp_path)


# the two workers print to the same console pipe at once: in any order, but in whole
# lines (PYTHONUNBUFFERED=1, as CI often sets, used to break them up now and then)
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("name", ["quickstart.py"])
def test_demo(tmp_path, name, unbuffered):
    out = run_example(name, tmp_path, PYTHONUNBUFFERED=unbuffered)
    assert "summary: {'mean_power':" in out and "13 jobs in" in out
    printed = [line for line in out.splitlines() if "smoothing" in line and "printed:" not in line]
    # what workers print reaches the console, each line whole
    assert printed == ["smoothing 200000 samples with width 25"] * 6, out
