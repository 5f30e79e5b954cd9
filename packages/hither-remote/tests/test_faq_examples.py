"""The FAQ's remote-execution examples: its server script (``hi.ComputeResource`` with a
``ParallelJobHandler``, a MongoDB job cache and the old ``kachery=`` argument, ``.clear()``,
``.run()``) in a process of its own, and its client (``hi.RemoteJobHandler``) here; only the
database name (one per test) and the container (no image can be pulled here: network none)
differ from the FAQ."""
from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

import hither as hi

from conftest import process_env

pytestmark = pytest.mark.timeout(120)
# a job cache needs hither-cache (not a dependency of hither-remote: the all-in-one
# environment runs this; the remote-only one skips it)
pytest.importorskip("hither_cache", reason="hither-cache is not installed")

SERVER = r'''
import os, logging
import hither as hi

logging.basicConfig(level=logging.INFO)

def main():
    mongo_url = os.getenv('MONGO_URL', 'mongodb://localhost:27017')
    db = hi.Database(mongo_url=mongo_url, database=os.environ['T_DB'])
    jh = hi.ParallelJobHandler(num_workers=2)
    jc = hi.JobCache(database=db)
    CR = hi.ComputeResource(database=db, compute_resource_id='resource1', job_handler=jh, kachery='default_readwrite', job_cache=jc)
    CR.clear()
    CR.run()

if __name__ == '__main__':
    main()
'''

FUNCS = '''
import numpy as np
import hither as hi

@hi.function('sumsqr', '0.1.0')
def sumsqr(x):
    return np.sum(x**2)
'''


def test_faq_server_and_client(db, store, store_url, storage_options, tmp_path, monkeypatch):
    pytest.importorskip("pymongo")
    (tmp_path / "server").mkdir()
    (tmp_path / "server.py").write_text(SERVER)
    env = process_env(tmp_path / "server", store_url, storage_options,
                      MONGO_URL=db.mongo_url, T_DB=db.database)
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py")], env=env, cwd=str(tmp_path / "server"),
                              stdout=log, stderr=subprocess.STDOUT)
    from hither.testing._modules import job_module

    funcs = job_module("faq_funcs", FUNCS)
    try:
        # the FAQ's client
        remote_job_handler = hi.RemoteJobHandler(database=db, compute_resource_id='resource1', store=store)
        with hi.Config(job_handler=remote_job_handler):
            val1 = funcs.sumsqr.run(x=np.array([1]))
            val2 = funcs.sumsqr.run(x=np.array([1, 2]))
            val3 = funcs.sumsqr.run(x=np.array([1, 2, 3]))
            assert val1.wait(60) == 1
            assert val2.wait(60) == 5
            assert val3.wait(60) == 14
        remote_job_handler.shutdown()
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert code == 0, text
    assert "capacity 2" in text and text.count("end sumsqr") == 3 and "stopped" in text
