"""The SQLite schema of the local job event log: one place, written by hither-core, read by hither-monitor.

The log lives at ``$HITHER_MONITOR_DB`` (default ``<user cache>/hither/monitor.sqlite3``) in
WAL mode, so several programs write and a monitor reads at once. Times are POSIX seconds
(float). ``jobs`` holds one row per job, updated as its life goes on; ``events`` one row per
status change (for timelines and counts over time); ``edges`` a pipeline's links; ``runs``
one row per program that recorded jobs. Readers open the file read-only and must accept
unknown columns (a later ``SCHEMA_VERSION`` only adds columns and tables).

Statuses: ``created``, ``queued``, ``running``, ``finished``, ``error``, ``cancelled``.
"""
SCHEMA_VERSION = 1

STATUSES = ("created", "queued", "running", "finished", "error", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,  -- one per program (process) that recorded jobs
    host        TEXT,
    pid         INTEGER,
    argv        TEXT,              -- the program's command line, truncated
    cwd         TEXT,
    started_at  REAL,
    last_seen   REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id           TEXT PRIMARY KEY,  -- <run_id>-<n>: unique across programs
    run_id           TEXT NOT NULL,
    function_name    TEXT,
    function_version TEXT,
    handler          TEXT,              -- handler class name, e.g. ParallelJobHandler
    status           TEXT NOT NULL,     -- one of STATUSES
    cached           INTEGER NOT NULL DEFAULT 0,
    job_hash         TEXT,
    host             TEXT,              -- where it ran (runtime info), else the program's host
    pid              INTEGER,           -- the process that ran it, when known
    created_at       REAL,
    started_at       REAL,
    ended_at         REAL,
    updated_at       REAL NOT NULL,
    error_type       TEXT,
    error_message    TEXT,
    traceback        TEXT,
    batch            TEXT,              -- Slurm job id of its batch, remote resource id, container
    pending_reason   TEXT,              -- why it waits (squeue reason, no live resource)
    args_summary     TEXT,              -- short repr of the arguments, truncated
    runtime_info     TEXT               -- JSON; console output truncated to 64 KiB per stream
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, updated_at);
CREATE INDEX IF NOT EXISTS jobs_function ON jobs (function_name, updated_at);
CREATE INDEX IF NOT EXISTS jobs_run ON jobs (run_id);
CREATE TABLE IF NOT EXISTS edges (
    job_id        TEXT NOT NULL,   -- the job that takes ...
    input_job_id  TEXT NOT NULL,   -- ... this job's result as an input
    PRIMARY KEY (job_id, input_job_id)
);
CREATE INDEX IF NOT EXISTS edges_input ON edges (input_job_id);
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY,  -- grows: a prune always keeps the newest event
    job_id  TEXT NOT NULL,
    status  TEXT NOT NULL,
    t       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
"""
