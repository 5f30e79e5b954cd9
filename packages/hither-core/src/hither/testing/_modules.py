"""A module of job functions written once per process for a conformance suite."""
from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from typing import Any, Dict

_made: Dict[str, Any] = {}


def job_module(name: str, source: str) -> Any:
    """Import ``source`` as module ``name`` from a folder of its own (created once, so the
    hither functions in it are registered once; removed at exit). Handlers that run jobs
    from code bundles package that folder."""
    mod = _made.get(name)
    if mod is None:
        d = tempfile.mkdtemp(prefix=f"hither-{name}-")
        atexit.register(shutil.rmtree, d, True)
        with open(os.path.join(d, f"{name}.py"), "w") as f:
            f.write(source)
        sys.path.insert(0, d)
        sys.modules.pop(name, None)
        mod = _made[name] = importlib.import_module(name)
    return mod
