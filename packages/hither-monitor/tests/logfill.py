"""Realistic event logs for the tests, the benchmark and the screenshot: rows written with the schema's SQL.

``fill(path, n_jobs)`` makes runs of image pipelines (load -> segment -> measure, a summary
taking many measures), on several workers and handlers (Parallel, Slurm batches with
pending reasons, a remote resource), mostly finished, some errors with tracebacks, some
running and queued, cached ones; 3-4 events per job.
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
from typing import List, Optional, Tuple

from hither.events.schema import SCHEMA

FUNCTIONS = [("load_image", "0.2.1"), ("segment_cells", "1.4.0"), ("measure_cells", "1.0.3")]
TRACEBACK = '''Traceback (most recent call last):
  File "/home/ana/pipeline/cells.py", line 88, in segment_cells
    mask = threshold(image, level=level)
  File "/home/ana/pipeline/cells.py", line 41, in threshold
    raise ValueError(f"level {level} is outside the image's range 0..255")
ValueError: level 300 is outside the image's range 0..255
'''


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def _job_row(job_id: str, run_id: str, fn: Tuple[str, str], handler: str, status: str, host: str, pid: int,
             t: float, rnd: random.Random, batch: Optional[str]) -> Tuple[tuple, List[tuple]]:
    created = t
    started = t + rnd.uniform(0.01, 2.0) if status not in ("created", "queued") else None
    ended = started + rnd.uniform(0.05, 8.0) if started is not None and status != "running" else None
    err = (("ValueError", "level 300 is outside the image's range 0..255", TRACEBACK)
           if status == "error" else (None, None, None))
    pending = "Resources" if status == "queued" and handler == "SlurmJobHandler" else None
    info = None
    if ended is not None:
        info = json.dumps({"start_time": started, "end_time": ended, "elapsed": ended - started,
                           "stdout": f"{fn[0]}: reading plate_{rnd.randint(1, 40)}.tif\n{fn[0]}: done\n",
                           "stderr": "" if status != "error" else "warning: clipping intensities\n"})
    updated = ended or started or created
    row = (job_id, run_id, fn[0], fn[1], handler, status, int(status == "finished" and rnd.random() < 0.1),
           f"{rnd.getrandbits(64):016x}", host, pid if started else None, created, started, ended, updated,
           *err, batch, pending, f"(image='plate_{rnd.randint(1, 40)}.tif', level={rnd.randint(1, 300)})", info)
    events = [(job_id, "created", created), (job_id, "queued", created + 0.001)]
    if started is not None:
        events.append((job_id, "running", started))
    if ended is not None:
        events.append((job_id, status, ended))
    return row, events


def fill(path: str, n_jobs: int = 100_000, n_runs: int = 20, seed: int = 1, now: Optional[float] = None) -> List[str]:
    """Write ``n_jobs`` jobs in ``n_runs`` runs to the log at ``path``; the run ids, oldest first."""
    rnd = random.Random(seed)
    now = time.time() if now is None else now
    conn = connect(path)
    jobs: List[tuple] = []
    events: List[tuple] = []
    edges: List[tuple] = []
    runs: List[tuple] = []
    per_run = max(1, n_jobs // n_runs)
    span = 6 * 3600.0
    run_ids = []
    n = 0
    for r in range(n_runs):
        run_id = f"r{r:03d}{rnd.getrandbits(32):08x}"
        run_ids.append(run_id)
        last = r == n_runs - 1
        t0 = now - span + r * span / n_runs
        host = ["ana-laptop", "node07", "node12"][r % 3]
        handler = ["ParallelJobHandler", "SlurmJobHandler", "ParallelJobHandler", "RemoteJobHandler"][r % 4]
        runs.append((run_id, host, 4000 + r, f"python analyse_plates.py --plates {r}", "/home/ana/pipeline", t0,
                     t0 + span / n_runs))
        count = per_run if not last else n_jobs - n
        prev: List[str] = []
        for i in range(count):
            fn = FUNCTIONS[i % 3] if i < count - 1 else ("summarize", "0.9.0")
            if last:
                status = rnd.choice(["finished"] * 6 + ["running"] * 2 + ["queued", "error"])
            else:
                status = "error" if rnd.random() < 0.03 else ("cancelled" if rnd.random() < 0.005 else "finished")
            worker = rnd.randrange(4)
            batch = (f"{1200 + r * 10 + worker}" if handler == "SlurmJobHandler"
                     else ("resource1" if handler == "RemoteJobHandler" else None))
            job_id = f"{run_id}-{i}"
            row, evs = _job_row(job_id, run_id, fn, handler, status, host, 5000 + r * 10 + worker,
                                t0 + i * (span / n_runs) / count, rnd, batch)
            jobs.append(row)
            events += evs
            if i % 3 and prev:
                edges.append((job_id, prev[-1]))
            prev.append(job_id)
            n += 1
        summary = prev[-1]
        edges += [(summary, j) for j in prev[2:-1:3][:30]]
    conn.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?)", runs)
    conn.executemany(f"INSERT OR REPLACE INTO jobs VALUES ({','.join('?' * 21)})", jobs)
    conn.executemany("INSERT OR IGNORE INTO edges VALUES (?,?)", edges)
    events.sort(key=lambda e: e[2])
    conn.executemany("INSERT INTO events (job_id, status, t) VALUES (?,?,?)", events)
    conn.commit()
    conn.close()
    return run_ids


def set_status(path: str, job_id: str, status: str, **fields: object) -> None:
    """Move one job on, as a recorder would (its row and one event)."""
    now = time.time()
    conn = connect(path)
    sets = ", ".join(f"{k} = ?" for k in fields)
    conn.execute(f"UPDATE jobs SET status = ?, updated_at = ?{', ' + sets if sets else ''} WHERE job_id = ?",
                 (status, now, *fields.values(), job_id))
    conn.execute("INSERT INTO events (job_id, status, t) VALUES (?,?,?)", (job_id, status, now))
    conn.commit()
    conn.close()
