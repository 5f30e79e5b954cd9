"""Settings for every test of the monorepo: hither's job event log goes to a temporary
folder of this pytest process, never to the user's cache (a test that checks the log sets
``HITHER_MONITOR_DB`` itself)."""
import atexit
import os
import shutil
import tempfile

if not os.environ.get("HITHER_MONITOR_DB"):
    _folder = tempfile.mkdtemp(prefix="hither-monitor-test-")
    os.environ["HITHER_MONITOR_DB"] = os.path.join(_folder, "monitor.sqlite3")
    atexit.register(shutil.rmtree, _folder, True)  # after hither's own exit flush (registered later)
