"""Job events: each job's life recorded to a local SQLite event log, read by hither-monitor.

Read API (for hither-monitor and anyone else): :func:`default_log_path`, :func:`open_log`,
:func:`recording_enabled`; the tables are in ``hither.events.schema``. The recording is
``hither.events.recorder``, called by the job shell at each transition.
"""
from hither.events.log import (DB_ENV, KEEP_DAYS_ENV, SWITCH_ENV, default_log_path, keep_days, open_log,
                               recording_enabled)
from hither.events.schema import SCHEMA_VERSION, STATUSES

__all__ = ["DB_ENV", "KEEP_DAYS_ENV", "SWITCH_ENV", "SCHEMA_VERSION", "STATUSES", "default_log_path",
           "keep_days", "open_log", "recording_enabled"]
