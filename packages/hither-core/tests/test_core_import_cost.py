"""What ``import hither`` loads in a fresh interpreter: the light API only. A job's code says
``import hither as hi`` in every container and worker process that runs it, so each module
here is paid per one-shot container job (issue 21: a cold container job within 1.3x of
``docker run``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

#: what ``import hither`` must not load: the content store and its plugin registry
#: (importlib.metadata, email, csv, zipfile...), the job runtime, the file utilities
HEAVY = ("hither.content", "hither.runtime", "hither.plugins", "hither.models", "importlib.metadata",
         "email", "zipfile", "pathlib", "shutil", "tempfile", "uuid", "socket", "json", "numpy", "pydantic")


def _modules_after(code: str, cache: str = "") -> set:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HITHER_"))}
    if cache:
        env["XDG_CACHE_HOME"] = cache
    out = subprocess.run([sys.executable, "-I", "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_hither_loads_the_light_api_only():
    before = _modules_after("pass")
    after = _modules_after("import hither as hi\nhi.function, hi.container, hi.Config, hi.File, "
                           "hi.TemporaryDirectory")
    added = after - before
    heavy = sorted(m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, f"import hither loads {heavy}"
    assert len(added) < 90, sorted(added)  # 165 when hi.File pulled in the content store


def test_a_file_made_after_the_light_import_loads_the_store_then(tmp_path):
    src = tmp_path / "data.txt"
    src.write_text("content")
    code = (f"import hither as hi\nf = hi.File({str(src)!r})\nassert f.read_text() == 'content'\n"
            "assert f.sha1 == hi.File.from_uri(f.uri).sha1\n"
            f"with hi.TemporaryDirectory() as d:\n    import os; assert os.path.isdir(d)\n"
            "assert not os.path.exists(d)")
    assert "hither.content.folder" in _modules_after(code, str(tmp_path / "cache"))
