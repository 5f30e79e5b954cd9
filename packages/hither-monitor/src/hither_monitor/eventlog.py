"""Read-only queries over the local job event log (the schema of ``hither.events.schema``).

Each request opens nothing: one read-only connection per thread is reused (SQLite in WAL
mode lets the programs write while the monitor reads). Every query runs on an index of
the schema (``jobs_updated``, ``jobs_status``, ``jobs_function``, ``events`` by ``seq``)
and is bounded by a LIMIT, so a log of 10^5 jobs answers in milliseconds.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hither.events import default_log_path, open_log
from hither.events.schema import STATUSES

from .timecounts import TimeCounts

PAGE_MAX = 500
# the jobs table's columns the list shows (the big ones, traceback and runtime_info, only on a job's page)
# (messages cut at 300 characters: the job's page has them whole)
LIST_COLUMNS = ("job_id", "run_id", "function_name", "function_version", "handler", "status", "cached",
                "host", "pid", "created_at", "started_at", "ended_at", "updated_at", "error_type",
                "substr(error_message, 1, 300) AS error_message", "batch", "substr(pending_reason, 1, 300) AS pending_reason")


# a program's command line may hold credentials: a URL's user:password, --password=... and kin
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_OPTION = re.compile(r"((?:secret|password|passwd|token|api[-_]?key)[A-Za-z0-9_-]*[=\s]+)\S+", re.IGNORECASE)


def scrub(text: Optional[str]) -> Optional[str]:
    """``text`` with credentials in URLs and the values of secret-looking options masked."""
    if not text:
        return text
    return _SECRET_OPTION.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", text))


class LogError(Exception):
    """The event log is missing or unreadable (the message says which and what to do)."""


@dataclass(frozen=True)
class JobFilter:
    """The jobs table's filters: each None means any."""

    status: Optional[str] = None
    function: Optional[str] = None
    handler: Optional[str] = None
    run_id: Optional[str] = None
    batch: Optional[str] = None
    since: Optional[float] = None   # updated_at >= since
    until: Optional[float] = None   # updated_at < until

    def where(self) -> Tuple[List[str], List[Any]]:
        clauses: List[str] = []
        params: List[Any] = []
        for column, value in (("status", self.status), ("function_name", self.function),
                              ("handler", self.handler), ("run_id", self.run_id), ("batch", self.batch)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("updated_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("updated_at < ?")
            params.append(self.until)
        return clauses, params


class EventLog:
    """The event log at ``path``, opened read-only."""

    def __init__(self, path: "str | os.PathLike[str] | None" = None) -> None:
        self.path = os.path.abspath(os.path.expanduser(path if path is not None else default_log_path()))
        if not os.path.isfile(self.path):
            raise LogError(f"no event log at {self.path}: run a hither program with the monitor on "
                           "(the default) or point --db / $HITHER_MONITOR_DB at the log")
        self._local = threading.local()
        self._time_counts = TimeCounts()
        self._facets: Tuple[float, Dict[str, List[str]]] = (0.0, {})
        try:
            self._conn().execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise LogError(f"{self.path} is not a hither event log ({exc})") from None

    def _conn(self) -> sqlite3.Connection:
        """This thread's read-only connection (hither-core's ``open_log``)."""
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = open_log(self.path, readonly=True, timeout=2.0)
            except FileNotFoundError as exc:
                raise LogError(str(exc)) from None
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
        return conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> List[Dict[str, Any]]:
        return [dict(r) for r in self._conn().execute(sql, params).fetchall()]

    # --- the jobs table -------------------------------------------------------------
    def jobs(self, flt: JobFilter, limit: int = 50, before: Optional[Tuple[float, str]] = None
             ) -> Dict[str, Any]:
        """A page of jobs, newest update first; ``before`` is the keyset cursor
        (updated_at, job_id) of the previous page's last row."""
        limit = max(1, min(int(limit), PAGE_MAX))
        clauses, params = flt.where()
        if before is not None:
            clauses.append("(updated_at < ? OR (updated_at = ? AND job_id < ?))")
            params += [before[0], before[0], before[1]]
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._rows(f"SELECT {', '.join(LIST_COLUMNS)} FROM jobs{where} "
                          "ORDER BY updated_at DESC, job_id DESC LIMIT ?", [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = [rows[-1]["updated_at"], rows[-1]["job_id"]] if more and rows else None
        return {"jobs": rows, "next": cursor}

    def count(self, flt: JobFilter) -> int:
        clauses, params = flt.where()
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return int(self._conn().execute(f"SELECT COUNT(*) FROM jobs{where}", params).fetchone()[0])

    def status_counts(self) -> Dict[str, int]:
        """Jobs in each status now (one index range count per status)."""
        conn = self._conn()
        return {s: int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (s,)).fetchone()[0])
                for s in STATUSES}

    def facets(self, max_age: float = 10.0) -> Dict[str, List[str]]:
        """The values the filters offer: functions (an index skip-scan) and handlers seen,
        remembered for ``max_age`` seconds (the handlers need a scan of the table)."""
        made, facets = self._facets
        if facets and time.monotonic() - made < max_age:
            return facets
        conn = self._conn()
        functions = [r[0] for r in conn.execute(
            "WITH RECURSIVE f(v) AS (SELECT MIN(function_name) FROM jobs UNION ALL "
            "SELECT (SELECT MIN(function_name) FROM jobs WHERE function_name > f.v) FROM f WHERE f.v IS NOT NULL) "
            "SELECT v FROM f WHERE v IS NOT NULL LIMIT 500")]
        handlers = [r[0] for r in conn.execute(
            "SELECT DISTINCT handler FROM jobs WHERE handler IS NOT NULL ORDER BY handler LIMIT 100")]
        facets = {"statuses": list(STATUSES), "functions": functions, "handlers": handlers}
        self._facets = (time.monotonic(), facets)
        return facets

    # --- one job --------------------------------------------------------------------
    def job(self, job_id: str) -> Optional[Dict[str, Any]]:
        rows = self._rows("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        job = rows[0]
        info = job.get("runtime_info")
        if info:
            try:
                job["runtime_info"] = json.loads(info)
            except ValueError:
                job["runtime_info"] = {"unparsed": str(info)[:65536]}
        job["inputs"] = self._rows(
            "SELECT j.job_id, j.function_name, j.status FROM edges e JOIN jobs j ON j.job_id = e.input_job_id "
            "WHERE e.job_id = ? LIMIT 200", (job_id,))
        job["outputs"] = self._rows(
            "SELECT j.job_id, j.function_name, j.status FROM edges e JOIN jobs j ON j.job_id = e.job_id "
            "WHERE e.input_job_id = ? LIMIT 200", (job_id,))
        job["events"] = self._rows("SELECT seq, status, t FROM events WHERE job_id = ? ORDER BY seq LIMIT 100",
                                   (job_id,))
        runs = self._rows("SELECT run_id, host, pid, argv, started_at, last_seen FROM runs WHERE run_id = ?",
                          (job["run_id"],))
        job["run"] = runs[0] if runs else None
        if job["run"] is not None:
            job["run"]["argv"] = scrub(job["run"]["argv"])
        return job

    # --- runs and their pipelines ---------------------------------------------------
    def runs(self, limit: int = 100) -> List[Dict[str, Any]]:
        """The latest programs that recorded jobs (command lines scrubbed of credentials)."""
        runs = self._rows("SELECT run_id, host, pid, argv, started_at, last_seen FROM runs "
                          "ORDER BY started_at DESC LIMIT ?", (max(1, min(limit, 1000)),))
        for r in runs:
            r["argv"] = scrub(r["argv"])
        return runs

    def graph(self, run_id: str, limit: int = 400) -> Dict[str, Any]:
        """The run's pipeline: its jobs that have an edge (the first ``limit``) and the edges among them."""
        edges = self._rows(
            "SELECT e.job_id AS target, e.input_job_id AS source FROM jobs j JOIN edges e ON e.job_id = j.job_id "
            "WHERE j.run_id = ? LIMIT ?", (run_id, limit * 4))
        ids: List[str] = []
        seen = set()
        for e in edges:
            for k in ("source", "target"):
                if e[k] not in seen and len(ids) < limit:
                    seen.add(e[k])
                    ids.append(e[k])
        nodes: List[Dict[str, Any]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            nodes += self._rows("SELECT job_id, function_name, status FROM jobs WHERE job_id IN "
                                f"({','.join('?' * len(chunk))})", chunk)
        edges = [e for e in edges if e["source"] in seen and e["target"] in seen]
        return {"run_id": run_id, "nodes": nodes, "edges": edges, "truncated": len(ids) >= limit}

    # --- over time ------------------------------------------------------------------
    def timeline(self, since: Optional[float] = None, limit: int = 2000) -> List[Dict[str, Any]]:
        """The latest ``limit`` jobs that started, with their worker (host, pid) and times."""
        clauses = ["started_at IS NOT NULL"]
        params: List[Any] = []
        if since is not None:
            clauses.append("updated_at >= ?")
            params.append(since)
        return self._rows("SELECT job_id, function_name, status, host, pid, started_at, ended_at FROM jobs "
                          f"WHERE {' AND '.join(clauses)} ORDER BY updated_at DESC LIMIT ?",
                          [*params, max(1, min(limit, 10000))])

    def counts_over_time(self) -> Dict[str, Any]:
        """How many jobs reached each status in each span of time (``timecounts``)."""
        self._time_counts.update(self._conn())
        return self._time_counts.snapshot()

    def last_seq(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def changes(self, after: int, limit: int = 1000) -> Dict[str, Any]:
        """Events after ``after`` (the page's cursor): the jobs they touched and the new cursor."""
        rows = self._conn().execute("SELECT seq, job_id, status FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, max(1, min(limit, 5000)))).fetchall()
        seq = rows[-1][0] if rows else max(after, 0)
        return {"seq": seq, "count": len(rows), "job_ids": sorted({r[1] for r in rows})[:200]}

    # --- Slurm batches and other groups ----------------------------------------------
    def batches(self, limit: int = 200) -> List[Dict[str, Any]]:
        """Jobs grouped by ``batch`` (a Slurm job id, a remote resource, a container): how many
        in each status, and a pending reason when one is recorded."""
        rows = self._rows(
            "SELECT batch, handler, COUNT(*) AS jobs, MIN(created_at) AS first, MAX(updated_at) AS last, "
            + ", ".join(f"SUM(status = '{s}') AS {s}" for s in STATUSES)
            + ", MAX(pending_reason) AS pending_reason FROM jobs WHERE batch IS NOT NULL "
            "GROUP BY batch, handler ORDER BY last DESC LIMIT ?", (max(1, min(limit, 2000)),))
        return rows
