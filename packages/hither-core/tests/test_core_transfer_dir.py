"""Where large arrays travel between a program and its ParallelJobHandler workers:
``$HITHER_SHM_DIR`` when it is a writable folder, else /dev/shm, with one warning."""
import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from hither.local import transfer

_PROGRAM = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import hither as hi
    from hither.local import transfer

    @hi.function('shm_dir_peek', '0.1.0')
    def shm_dir_peek(a):
        from hither.local import transfer
        return transfer.SHM_DIR, sorted(os.listdir(transfer.SHM_DIR)), a + 1

    if __name__ == "__main__":
        a = np.arange(3 * 1024 * 1024 // 8, dtype=np.float64)  # 3 MB: out of band
        with hi.Config(job_handler=hi.ParallelJobHandler(2), retry=False):
            where, names, out = shm_dir_peek.run(a=a).wait(timeout=60)
        print(json.dumps({"here": transfer.SHM_DIR, "worker": where, "pid": os.getpid(),
                          "names": [n for n in names if n.startswith("hither-")],
                          "same": bool((out == a + 1).all())}))
""")


def _run(tmp_path, shm_dir):
    (tmp_path / "prog.py").write_text(_PROGRAM)
    env = dict(os.environ, HITHER_SHM_DIR=str(shm_dir))
    proc = subprocess.run([sys.executable, str(tmp_path / "prog.py")], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_a_set_shm_dir_holds_the_buffers_of_big_transfers(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    out, err = _run(tmp_path, shm)
    assert out["here"] == out["worker"] == str(shm)
    # the argument's buffer file was there while the job ran, named for its owner
    assert [n.startswith(f"hither-{out['pid']}-") and n.endswith(".buf") for n in out["names"]] == [True]
    assert out["same"] and "HITHER_SHM_DIR" not in err
    assert list(shm.iterdir()) == []  # every buffer removed once read


def test_a_missing_shm_dir_warns_once_per_program_and_falls_back(tmp_path):
    missing = tmp_path / "no-such-folder"
    out, err = _run(tmp_path, missing)
    assert out["here"] == out["worker"] != str(missing) and out["same"]
    assert out["here"] == ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
    # the program warns; its two workers, which inherit the variable, do not repeat it
    assert err.count("HITHER_SHM_DIR") == 1, err
    assert f"HITHER_SHM_DIR={missing} does not exist; large arrays go through {out['here']}" in err


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_shm_dir_fallback_is_named_in_one_warning(tmp_path, monkeypatch, caplog, kind):
    wanted = tmp_path / "shm"
    if kind == "a file":
        wanted.write_text("")
    monkeypatch.setenv("HITHER_SHM_DIR", str(wanted))
    monkeypatch.setattr(transfer, "_warned", [False])
    with caplog.at_level(logging.WARNING, logger="hither.local.transfer"):
        first, second = transfer._shm_dir(), transfer._shm_dir()
    assert first == second != str(wanted)
    [record] = caplog.records
    why = "does not exist" if kind == "missing" else "is not a folder"
    assert record.getMessage().startswith(f"HITHER_SHM_DIR={wanted} {why}; large arrays go "
                                          f"through {first} instead")


def test_a_usable_or_unset_shm_dir_does_not_warn(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(transfer, "_warned", [False])
    with caplog.at_level(logging.WARNING, logger="hither.local.transfer"):
        monkeypatch.setenv("HITHER_SHM_DIR", str(tmp_path))
        assert transfer._shm_dir() == str(tmp_path)
        monkeypatch.delenv("HITHER_SHM_DIR")
        assert transfer._shm_dir() in ("/dev/shm", tempfile.gettempdir())
    assert caplog.records == []
