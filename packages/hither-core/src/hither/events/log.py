"""Where the job event log lives and how to open it: the one path logic, shared by the
recorder here and by hither-monitor's reader."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Mapping, Optional

from hither.events.schema import SCHEMA

#: the environment variable naming the log's file
DB_ENV = "HITHER_MONITOR_DB"
#: ``0`` (or ``false``, ``no``, ``off``) turns recording off
SWITCH_ENV = "HITHER_MONITOR"
#: days a job stays in the log (``0``: no pruning)
KEEP_DAYS_ENV = "HITHER_MONITOR_KEEP_DAYS"
KEEP_DAYS_DEFAULT = 30.0

_OFF = ("0", "false", "no", "off")


def default_log_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The event log's file: ``$HITHER_MONITOR_DB``, else ``<cache>/hither/monitor.sqlite3``
    where ``<cache>`` is ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    env = os.environ if environ is None else environ
    given = env.get(DB_ENV, "").strip()
    if given:
        return Path(os.path.expanduser(given))
    cache = env.get("XDG_CACHE_HOME", "").strip()
    if not cache or not os.path.isabs(cache):  # the XDG spec ignores a relative value
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "hither" / "monitor.sqlite3"


def recording_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether hither-core records jobs (``$HITHER_MONITOR`` is not ``0``)."""
    env = os.environ if environ is None else environ
    return env.get(SWITCH_ENV, "1").strip().lower() not in _OFF


def keep_days(environ: Optional[Mapping[str, str]] = None) -> float:
    """Days a job stays in the log (``$HITHER_MONITOR_KEEP_DAYS``, default 30; 0 keeps all).
    A value that is not a number is ignored (the default holds)."""
    env = os.environ if environ is None else environ
    try:
        days = float(env.get(KEEP_DAYS_ENV, "") or KEEP_DAYS_DEFAULT)
    except ValueError:
        return KEEP_DAYS_DEFAULT
    return days if days >= 0 and days == days else KEEP_DAYS_DEFAULT


def open_log(path: "Optional[str | os.PathLike[str]]" = None, readonly: bool = True,
             timeout: float = 0.05) -> sqlite3.Connection:
    """A connection to the event log at ``path`` (default: :func:`default_log_path`).

    ``readonly=True`` (for a reader such as hither-monitor) opens the file as it is and
    never creates or changes it; a missing file raises ``FileNotFoundError`` naming it.
    ``readonly=False`` creates the folder and the file, sets WAL mode and creates the
    tables. ``timeout``: seconds to wait for another writer's lock (``busy_timeout``).
    Rows come back as ``sqlite3.Row``. ``check_same_thread`` is off: a caller that shares
    the connection between threads serialises its use itself."""
    p = Path(path) if path is not None else default_log_path()
    if readonly:
        if not p.is_file():
            raise FileNotFoundError(f"no hither job event log at {p} (run a hither program with "
                                    f"{SWITCH_ENV} not 0, or set {DB_ENV})")
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout,
                              check_same_thread=False)
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(p), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if not readonly:
            if con.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError(f"could not put {p} in WAL mode")
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(SCHEMA)
        else:
            con.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()  # a clear error for a non-log file
    except BaseException:
        con.close()
        raise
    return con
