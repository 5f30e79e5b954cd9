"""The working folder shared by a SlurmJobHandler and its pilots, and its atomic steps.

    WORKING_DIR/
      jobs/<key>/            a job directory (written by the client)
      done/<key>             a job's end (exit code, reason, batch; "error" when the pilot
                             failed the job itself), written by its pilot
      logs/<key>.log         the job's console output, written while it runs
      logs/<key>.failed      the job failed: its log is kept FAILED_LOG_RETENTION, not LOG_RETENTION
      queue/<key>            a queued job: {"timeout": s, "container": image, engine, options or
                             null, "store": whether results go to store/} (appears by rename,
                             once complete)
      running/<batch>/<key>  a claim: the queue entry renamed here by the pilot of <batch>;
                             the client removes running/<batch>/ when it gives the batch up
      cancel/<key>           a cancel request for a running job
      pilots/<batch>.json    the pilot of a batch: pid, host, Slurm job id, end time
      clients/<client>.json  a handler using the folder (pid, host; touched while it lives)
      batches/<batch>/       the batch script and Slurm's output of the batch; ``client`` names
                             its handler; ``failed`` when it lost jobs or its pilot never came up
      store/                 results that stay on the cluster (``hither.content.folder.ContentFolder``
                             layout: sha1/ab/cd/<sha1>); jobs' arguments refer to them by URI

What ended is pruned (``prune``: at a handler's start and every ``PRUNE_INTERVAL``): the
folders of ended batches at once (of failed ones after ``FAILED_LOG_RETENTION``), logs of
jobs that ended well after ``LOG_RETENTION``, of failed jobs after ``FAILED_LOG_RETENTION``.

Job keys are ``<client>.<sequence>``, so a handler that starts in a folder left by a killed
program finds that program's queued and claimed jobs and takes them away (``reclaim_stale``).
Claims are ``rename(queue/<key>, running/<batch>/<key>)``: exactly one pilot wins, on any
POSIX file system (NFS included). Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Set

if TYPE_CHECKING:  # pragma: no cover
    from hither.content.folder import ContentFolder

logger = logging.getLogger("hither_slurm.workdir")

SUBDIRS = ("jobs", "logs", "queue", "running", "done", "cancel", "pilots", "batches", "clients", "tmp",
           "store")
#: a client on another host is dead when its file has not been touched for this long
CLIENT_STALE_SECONDS = 120.0
#: seconds the log of a job that ended well is kept (get_runtime_info().log_file)
LOG_RETENTION = 600.0
#: seconds the log of a failed job, and the folder of a failed batch, are kept
FAILED_LOG_RETENTION = 7 * 86400.0
#: seconds between two prunes by a running handler
PRUNE_INTERVAL = 600.0


class WorkDir:
    """Paths and atomic operations of one working folder."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def create(self) -> "WorkDir":
        for d in SUBDIRS:
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        return self

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def job_dir(self, key: str) -> str:
        return self.path("jobs", key)

    def log_file(self, key: str) -> str:
        return self.path("logs", key + ".log")

    def write_json(self, path: str, data: Dict[str, Any]) -> None:
        """Write ``data`` at ``path`` atomically (a reader sees all of it or nothing)."""
        tmp = self.path("tmp", f"{os.path.basename(path)}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    @staticmethod
    def read_json(path: str) -> Optional[Dict[str, Any]]:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ client side
    def enqueue(self, key: str, timeout: Optional[float], container: Optional[dict] = None,
                store: bool = False) -> None:
        """Queue ``jobs/<key>``; ``store``: its pilot places arguments held by reference
        from ``store/`` and leaves the result's large parts there (``hither.outside.documents``)."""
        self.write_json(self.path("queue", key), {"timeout": timeout, "container": container, "store": store})

    def store(self) -> "ContentFolder":
        """The content store of this folder, where results stay between jobs."""
        from hither.content.folder import ContentFolder

        return ContentFolder(self.path("store"))

    def dequeue(self, key: str) -> bool:
        """Take a queued job back; False if a pilot has claimed it already."""
        try:
            os.remove(self.path("queue", key))
            return True
        except FileNotFoundError:
            return False

    def claims(self) -> Dict[str, str]:
        """key -> batch of every claimed job."""
        out: Dict[str, str] = {}
        for batch in self._listdir(self.path("running")):
            for key in self._listdir(self.path("running", batch)):
                out[key] = batch
        return out

    def request_cancel(self, key: str) -> None:
        with open(self.path("cancel", key), "w"):
            pass

    def outcome(self, key: str) -> Optional[Dict[str, Any]]:
        return self.read_json(self.path("done", key))

    def finished(self) -> List[str]:
        """Keys of jobs whose outcome is written (one listing, however many jobs wait)."""
        return self._listdir(self.path("done"))

    def discard(self, key: str) -> None:
        """Remove what is left of a collected (or abandoned) job, its log excepted."""
        shutil.rmtree(self.job_dir(key), ignore_errors=True)
        for sub in ("done", "cancel"):
            try:
                os.remove(self.path(sub, key))
            except FileNotFoundError:
                pass

    def release(self, key: str, batch: str) -> None:
        """Drop a claim (its pilot is gone)."""
        try:
            os.remove(self.path("running", batch, key))
        except FileNotFoundError:
            pass

    def fence(self, batch: str) -> List[str]:
        """Give up a batch the client saw end: its claims folder is renamed away (atomic),
        so its pilot, if it still runs (Slurm shows a cancelled batch as ended before its
        processes get the signal), can claim nothing more and stops; returns the keys it
        had claimed."""
        gone = self.path("running", f".ended-{batch}")
        try:
            os.rename(self.path("running", batch), gone)
        except FileNotFoundError:
            return []
        keys = self._listdir(gone)
        shutil.rmtree(gone, ignore_errors=True)
        return keys

    def mark_failed(self, key: str) -> None:
        """Keep the log of a failed job ``FAILED_LOG_RETENTION`` seconds."""
        self._touch(self.path("logs", key + ".failed"))

    def mark_batch_failed(self, batch: str) -> None:
        """Keep the folder (Slurm's output) of a batch that lost jobs or never came up."""
        self._touch(self.path("batches", batch, "failed"))

    @staticmethod
    def _touch(path: str) -> None:
        try:
            with open(path, "a"):
                pass
        except OSError:
            pass

    def drop_batch(self, batch: str, now: Optional[float] = None) -> bool:
        """Remove what is left of an ended batch (its pilot file, claims folder and, unless
        it failed less than ``FAILED_LOG_RETENTION`` ago, its folder). True if all went."""
        try:
            os.remove(self.path("pilots", batch + ".json"))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.path("running", batch), ignore_errors=True)
        bdir = self.path("batches", batch)
        if _age(os.path.join(bdir, "failed"), now) < FAILED_LOG_RETENTION:
            return False
        shutil.rmtree(bdir, ignore_errors=True)
        return True

    def prune(self, client: str = "", live_batches: Optional[Set[str]] = None,
              now: Optional[float] = None) -> int:
        """Remove what ended: batches of clients that are gone, and those of ``client``
        (the caller) not in ``live_batches`` (a minute after they began); logs of jobs no
        longer queued or run, past their retention. Returns how many things went."""
        live = live_batches or set()
        n = 0
        alive: Dict[str, bool] = {}

        def gone(client: str) -> bool:
            if client not in alive:
                alive[client] = self.client_alive(client)
            return not alive[client]

        for batch in self._listdir(self.path("batches")):
            try:
                with open(self.path("batches", batch, "client")) as f:
                    owner = f.read().strip()
            except OSError:
                owner = ""
            if batch in live:
                continue
            age = _age(self.path("batches", batch), now)
            if (owner == client and age > 60) or (gone(owner) if owner else age > 86400):
                n += self.drop_batch(batch, now)
        for name in self._listdir(self.path("running")):
            if name.startswith(".ended-") or (name not in live and not os.path.isdir(self.path("batches", name))):
                shutil.rmtree(self.path("running", name), ignore_errors=True)
        busy = set(self.queued()) | set(self.claims()) | set(self._listdir(self.path("jobs")))
        for name in self._listdir(self.path("logs")):
            key, ext = os.path.splitext(name)
            if ext != ".log" or key in busy:
                continue
            failed = self.path("logs", key + ".failed")
            keep = FAILED_LOG_RETENTION if os.path.exists(failed) else LOG_RETENTION
            if _age(self.path("logs", name), now) > keep:
                for path in (self.path("logs", name), failed):
                    try:
                        os.remove(path)
                    except FileNotFoundError:
                        pass
                n += 1
        return n

    def pilot_info(self, batch: str) -> Optional[Dict[str, Any]]:
        return self.read_json(self.path("pilots", batch + ".json"))

    # ------------------------------------------------------------------ clients
    def register_client(self, client: str) -> None:
        self.write_json(self.path("clients", client + ".json"),
                        {"pid": os.getpid(), "host": socket.gethostname(), "start": time.time()})

    def touch_client(self, client: str) -> None:
        try:
            os.utime(self.path("clients", client + ".json"))
        except FileNotFoundError:
            self.register_client(client)

    def unregister_client(self, client: str) -> None:
        try:
            os.remove(self.path("clients", client + ".json"))
        except FileNotFoundError:
            pass

    def client_alive(self, client: str) -> bool:
        path = self.path("clients", client + ".json")
        info = self.read_json(path)
        if info is None:
            return False
        if info.get("host") == socket.gethostname():
            try:
                os.kill(int(info["pid"]), 0)
                return True
            except (OSError, ValueError, KeyError):
                return False
        try:
            return time.time() - os.path.getmtime(path) < CLIENT_STALE_SECONDS
        except OSError:
            return False

    def reclaim_stale(self) -> int:
        """Take away the queued and claimed jobs of clients that are gone (a killed program):
        queue entries and job directories go, running ones get a cancel request. Returns
        how many jobs were reclaimed."""
        alive: Dict[str, bool] = {}

        def dead(key: str) -> bool:
            client = key.split(".", 1)[0]
            if client not in alive:
                alive[client] = self.client_alive(client)
            return not alive[client]

        n = 0
        for key in self.queued():
            if dead(key) and self.dequeue(key):
                n += 1
        for key, batch in self.claims().items():
            if dead(key):
                self.request_cancel(key)  # a live pilot kills it
                self.release(key, batch)
                n += 1
        for key in set(self._listdir(self.path("jobs"))) | set(self.finished()):
            if dead(key):
                shutil.rmtree(self.job_dir(key), ignore_errors=True)
                try:
                    os.remove(self.path("done", key))
                except FileNotFoundError:
                    pass
        for key in self.cancel_requests():
            # kept a while, so a live pilot still running the job sees the request
            path = self.path("cancel", key)
            try:
                old = time.time() - os.path.getmtime(path) > 60
            except OSError:
                continue
            if dead(key) and old:
                os.remove(path)
        for client, ok in alive.items():
            if not ok:
                self.unregister_client(client)
        if n:
            logger.warning("reclaimed %d job(s) left in %s by a program that ended", n, self.root)
        return n

    # ------------------------------------------------------------------ pilot side
    def queued(self) -> List[str]:
        return sorted(self._listdir(self.path("queue")))

    def claim(self, key: str, batch: str) -> bool:
        """Claim a queued job for ``batch`` (its pilot has read the queue entry): False if
        another pilot won, or the client gave the batch up (``fence``)."""
        try:
            os.rename(self.path("queue", key), self.path("running", batch, key))
            return True
        except FileNotFoundError:
            return False

    def fenced(self, batch: str) -> bool:
        """Whether the client has given ``batch`` up (its pilot must stop)."""
        return not os.path.isdir(self.path("running", batch))

    def cancel_requests(self) -> List[str]:
        return self._listdir(self.path("cancel"))

    def finish(self, key: str, batch: str, outcome: Dict[str, Any]) -> None:
        """Record a job's end: outcome first, then the claim goes (a reader that sees no
        claim always sees the outcome)."""
        self.write_json(self.path("done", key), outcome)
        self.release(key, batch)

    @staticmethod
    def _listdir(path: str) -> List[str]:
        try:
            return [n for n in os.listdir(path) if not n.startswith(".")]
        except FileNotFoundError:
            return []

    def iter_batches(self) -> Iterator[str]:
        yield from self._listdir(self.path("running"))


def _age(path: str, now: Optional[float] = None) -> float:
    """Seconds since ``path`` was last modified (infinite when it does not exist)."""
    try:
        return (time.time() if now is None else now) - os.path.getmtime(path)
    except OSError:
        return float("inf")
