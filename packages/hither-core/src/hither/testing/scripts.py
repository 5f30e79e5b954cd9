"""Test scripts that several handlers' suites run as a program: the script of issue 19, a
``__main__`` function whose globals its main block changes.

A handler that runs a script's function outside the caller (a container, Slurm, a compute
resource) loads the script's definitions only; the job must still see the caller's values::

    path = write_script_globals_program(tmp_path / "script.py", "scaled_ct",
                                        config="container='IMAGE'")
    check_script_globals_output(subprocess.run([sys.executable, str(path)], ...))
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, List

#: what the function returns when it runs with the caller's globals (the file's give [20, 0.0],
#: and no OFFSET at all)
SCRIPT_GLOBALS_EXPECTED: List[Any] = [30, 6.0]


def write_script_globals_program(path: Path, function_name: str, config: str, setup: str = "",
                                 teardown: str = "pass", wait_args: str = "") -> Path:
    """Write the program at ``path``: ``function_name`` reads ``SCALE`` (2 in the file, 3 in
    the main block), a helper reading ``OFFSET`` (assigned only in the main block) and a
    global array; it runs once under ``hi.Config(<config>)`` after ``setup`` (lines of the
    main block; ``teardown`` runs in its ``finally``) and prints the result as JSON."""
    if not function_name.isidentifier():
        raise ValueError(f"function_name must be a Python name, got {function_name!r}")

    def block(code: str, indent: int) -> str:
        return textwrap.indent(textwrap.dedent(code).strip() or "pass", " " * indent)

    body = (
        "import json\n"
        "import numpy as np\n"
        "import hither as hi\n"
        "SCALE = 2\n"
        "WEIGHTS = np.zeros(2)\n"
        "def helper(x):\n"
        "    return x + OFFSET\n"
        f"@hi.function({function_name!r}, '0.1.0')\n"
        f"def {function_name}(x):\n"
        "    return [helper(x) * SCALE, float(WEIGHTS.sum())]\n"
        "if __name__ == '__main__':\n"
        "    SCALE = 3\n"
        "    OFFSET = 0\n"
        "    WEIGHTS = np.arange(4.0)\n"
        f"{block(setup, 4)}\n"
        "    try:\n"
        f"        with hi.Config({config}):\n"
        f"            print(json.dumps({function_name}.run(x=10).wait({wait_args})))\n"
        "    finally:\n"
        f"{block(teardown, 8)}\n")
    path.write_text(body)
    return path


def check_script_globals_output(proc: Any) -> None:
    """The program ran (a ``subprocess.CompletedProcess`` with text output) and printed the
    result of the caller's globals."""
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == SCRIPT_GLOBALS_EXPECTED
