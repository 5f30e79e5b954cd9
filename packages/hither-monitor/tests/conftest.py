"""Fixtures of hither-monitor's tests: event logs, the real ``hither-monitor serve``, a headless chromium.

The page tests drive Debian's chromium (``/usr/bin/chromium``, installed by
``scripts/services.sh``) through playwright; without it they skip, or fail when
``HITHER_REQUIRE_SERVICES=1``. The bus tests use the MongoDB-protocol server on
127.0.0.1:27017 the same way.
"""
import os
import sys

import pytest
from hither.testing.services import mongo_server, unavailable

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import logfill  # noqa: F401,E402 - the tests import it by this name
from monitor_procs import start_serve, stop_serve  # noqa: E402

CHROMIUM = os.environ.get("HITHER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def small_log(tmp_path):
    """A log of 300 jobs in 3 runs (errors, running, queued, pipelines); its path."""
    path = str(tmp_path / "monitor.sqlite3")
    logfill.fill(path, n_jobs=300, n_runs=3)
    return path


@pytest.fixture(scope="session")
def big_log(tmp_path_factory):
    """A log of 10^5 jobs (about 4*10^5 events); its path."""
    path = str(tmp_path_factory.mktemp("big") / "monitor.sqlite3")
    logfill.fill(path, n_jobs=100_000, n_runs=20)
    return path


@pytest.fixture
def serve():
    """serve(db, *args): a real ``hither-monitor serve`` over ``db``, stopped afterwards."""
    started = []

    def _serve(db, *args, env=None):
        s = start_serve("--db", db, *args, env=env)
        started.append(s)
        return s
    yield _serve
    for s in started:
        stop_serve(s)


@pytest.fixture(scope="session")
def chromium():
    """A headless chromium (Debian's, through playwright); closed at the end of the session."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"no chromium at {CHROMIUM}: install it with bash scripts/services.sh chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - say why the browser did not start
        pw.stop()
        unavailable(f"chromium at {CHROMIUM} did not start: {exc}")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def page(chromium):
    """A fresh browser page that records the page's uncaught errors (asserted empty after)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="session")
def mongo_url():
    # the bus view is the optional extra: without it (the monitor-only environment) skip
    pytest.importorskip("hither_remote", reason="hither-remote is not installed (hither-monitor[remote])")
    return mongo_server(os.environ.get("HITHER_TEST_MONGO_URL", "mongodb://127.0.0.1:27017"))
