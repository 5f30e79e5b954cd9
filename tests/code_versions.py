"""Two versions of one hither function (same name and version, other code), for the job-cache
tests of code changes."""
from __future__ import annotations

import importlib.util
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any, Tuple

_SOURCE = ("import hither as hi\n\n@hi.function({name!r}, '0.1.0')\n"
           "def {name}(x):\n    return x + {inc}\n")


def same_version_other_code(folder: Path, name: str) -> Tuple[Any, Any]:
    """``name`` (version 0.1.0) twice, each from a module file of its own under ``folder``:
    the old returns ``x + 1``, the new ``x + 2``. (Registering a name twice warns: silenced.)"""
    versions = []
    for inc in (1, 2):
        d = folder / f"code{inc}"
        d.mkdir()
        path = d / f"{name}_mod.py"
        path.write_text(_SOURCE.format(name=name, inc=inc))
        module_name = f"{name}_mod_{uuid.uuid4().hex[:8]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "registered twice" is expected here
            spec.loader.exec_module(module)
        versions.append(getattr(module, name))
    return versions[0], versions[1]
