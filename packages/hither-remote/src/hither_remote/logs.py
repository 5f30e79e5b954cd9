"""Live console output of running jobs: shipped by the resource, read by ``hither-remote logs``.

The resource asks the runner to write the job's stdout and stderr, line-buffered, to
``console.log`` in the job directory (``with_console_file``; ``hither.runtime`` honours
``spec["extra"]["console_file"]``, on the host or in a container). A ``LogShipper`` thread
appends what is new to the bus collection ``hither_remote_logs`` every ``interval``
(0.5 s) and once more when the job ends, before its outcome is written. Each job keeps at
most ``max_bytes`` there (1 MB by default; then a last chunk says the rest was cut: the
job's runtime info, sent with its outcome, still holds all of it)::

    shipper = LogShipper(bus)                    # in the resource
    shipper.start(job_id, attempt, job_dir)      # after the job directory is made
    shipper.finish(job_id)                       # after the run, before the outcome

    for chunk in read_chunks(bus, job_id):       # in a reader
        print(chunk.text, end="")
"""
from __future__ import annotations

import codecs
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    from .bus import Bus

logger = logging.getLogger("hither_remote.logs")

LOGS = "hither_remote_logs"
CONSOLE_FILE = "console.log"
#: bytes of console output kept on the bus per job run
DEFAULT_MAX_BYTES = 1_000_000
#: seconds between two shipments of a running job's new output
DEFAULT_INTERVAL = 0.5


class LogChunk(BaseModel):
    """A piece of one run's console output (collection ``hither_remote_logs``)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")   # job id / attempt / seq: a retried insert is a duplicate
    job_id: str
    resource_id: str
    attempt: int
    seq: int
    text: str
    time: float
    truncated: bool = False        # the output went past the cap: this is the last chunk


def logs_collection(bus: "Bus") -> Any:
    return bus.client[bus.database.database][LOGS]


def with_console_file(document: Dict[str, Any]) -> Dict[str, Any]:
    """A job document whose runner writes the console to ``CONSOLE_FILE`` (the signed
    original is left as it is)."""
    spec = dict(document.get("spec") or {})
    spec["extra"] = {**(spec.get("extra") or {}), "console_file": CONSOLE_FILE}
    return {**document, "spec": spec}


class _Watched:
    def __init__(self, job_id: str, attempt: int, path: str) -> None:
        self.job_id, self.attempt, self.path = job_id, attempt, path
        self.offset = 0      # bytes of the file shipped
        self.seq = 0
        self.done = False    # cut at the cap: nothing more is shipped
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.lock = threading.Lock()


class LogShipper:
    """Ships the growing console files of a resource's running jobs to the bus (see the
    module docstring). One thread for all jobs; ``close()`` stops it."""

    def __init__(self, bus: "Bus", resource_id: str, interval: float = DEFAULT_INTERVAL,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.collection = logs_collection(bus)
        self.resource_id = resource_id
        self.interval = interval
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._watched: Dict[str, _Watched] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self, job_id: str, attempt: int, job_dir: str) -> None:
        """Watch ``job_dir``'s console file for this run of ``job_id``."""
        with self._lock:
            self._watched[job_id] = _Watched(job_id, attempt, os.path.join(job_dir, CONSOLE_FILE))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hither-remote-logs", daemon=True)
                self._thread.start()

    def finish(self, job_id: str) -> None:
        """Ship the rest of ``job_id``'s output (the run ended) and stop watching it."""
        with self._lock:
            w = self._watched.pop(job_id, None)
        if w is not None:
            self._ship(w, final=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                watched = list(self._watched.values())
            for w in watched:
                self._ship(w, final=False)

    def _ship(self, w: _Watched, final: bool) -> None:
        with w.lock:
            if w.done:
                return
            try:
                with open(w.path, "rb") as f:
                    f.seek(w.offset)
                    room = self.max_bytes - w.offset
                    data = f.read(room + 1)
            except FileNotFoundError:
                return  # nothing printed yet
            except OSError as exc:
                logger.debug("cannot read the console of %s: %s", w.job_id, exc)
                return
            cut = len(data) > room
            if cut:
                data = data[:room]
            state = w.decoder.getstate()
            text = w.decoder.decode(data, final=final or cut)
            if cut:
                text += (f"\n[hither-remote: the console output of this run passed {self.max_bytes} bytes; "
                         "the rest is not shown here: the job's runtime info holds all of it]\n")
            if not text:  # only part of a character so far: the decoder holds it
                w.offset += len(data)
                return
            chunk = LogChunk(_id=f"{w.job_id}/{w.attempt}/{w.seq}", job_id=w.job_id,
                             resource_id=self.resource_id, attempt=w.attempt, seq=w.seq, text=text,
                             time=time.time(), truncated=cut)
            if not self._insert(chunk, final):
                w.decoder.setstate(state)  # the same bytes are decoded again next time
                return
            w.offset += len(data)
            w.seq += 1
            w.done = cut

    def _insert(self, chunk: LogChunk, final: bool) -> bool:
        import pymongo.errors

        for i in range(6 if final else 1):  # the end of a run is worth a wait through an outage
            try:
                self.collection.insert_one(chunk.model_dump(by_alias=True))
                return True
            except pymongo.errors.DuplicateKeyError:
                return True  # an earlier attempt got through
            except pymongo.errors.PyMongoError as exc:
                logger.debug("cannot ship the console of %s (%s)", chunk.job_id, type(exc).__name__)
                if final:
                    time.sleep(min(2.0, 0.25 * 2 ** i))
        return False


def read_chunks(bus: "Bus", job_id: str, after_seq: int = -1, attempt: Optional[int] = None) -> List[LogChunk]:
    """The chunks of ``job_id``'s latest run (or of ``attempt``) after ``after_seq``, in order."""
    coll = logs_collection(bus)
    if attempt is None:
        last = list(coll.find({"job_id": job_id}, {"attempt": 1}).sort("attempt", -1).limit(1))
        if not last:
            return []
        attempt = int(last[0]["attempt"])
    docs = coll.find({"job_id": job_id, "attempt": attempt, "seq": {"$gt": after_seq}}).sort("seq", 1)
    return [LogChunk.model_validate(d) for d in docs]


def clear_logs(bus: "Bus", resource_id: str) -> int:
    """Remove the log chunks of ``resource_id``'s jobs that are no longer on the bus."""
    coll = logs_collection(bus)
    ids = {d["job_id"] for d in coll.find({"resource_id": resource_id}, {"job_id": 1})}
    if not ids:
        return 0
    present = {d["_id"] for d in bus.jobs.find({"_id": {"$in": list(ids)}}, {"_id": 1})}
    gone = list(ids - present)
    return coll.delete_many({"job_id": {"$in": gone}}).deleted_count if gone else 0
