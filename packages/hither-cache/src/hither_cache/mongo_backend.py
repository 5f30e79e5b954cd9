"""The MongoDB cache backend (needs ``pip install 'hither-cache[mongo]'``).

One document per entry in the ``job_cache`` collection, with a unique index on
``job_hash`` and upserts, so each write replaces the whole document atomically. The
document stays small whatever the result: arrays and the encoded result go inside it
only up to ``inline_limit`` bytes in total; beyond that they go to the content store and
the document keeps their ``sha1://`` URIs (MongoDB refuses documents over 16 MB).

pymongo is imported only here, when a backend is made.
"""
from __future__ import annotations

import io
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, TypeVar

import numpy as np

from hither.errors import ConfigError, PluginNotInstalledError
from hither.plugins.cli import pip_install
from hither.plugins.interfaces import CacheBackend, Store
from hither.models import CacheEntry, Database
from hither.values.codec import decode, encode

from . import npy
from .documents import EntryMeta, EntrySummary, MongoArray, MongoEntryDoc, MongoPayload
from .errors import CacheError, CacheUnavailableError
from .limits import seconds_option

if TYPE_CHECKING:  # pragma: no cover
    from pymongo.collection import Collection

logger = logging.getLogger("hither.cache")

T = TypeVar("T")

#: documents are kept well below MongoDB's 16 MB limit
MAX_INLINE_LIMIT = 8 * 1024 * 1024
#: what iter_summaries reads of a document (never the result)
_SUMMARY_PROJECTION = {**{k: 1 for k in EntryMeta.model_fields}, "size_bytes": 1, "_id": 0}


def _pymongo() -> Any:
    try:
        import pymongo
    except ImportError as exc:
        raise PluginNotInstalledError(
            "the MongoDB job cache needs pymongo, which is not installed: "
            + pip_install("hither-cache[mongo]")) from exc
    return pymongo


def _reason(exc: Exception) -> str:
    """The first part of a pymongo error: what went wrong, without its topology dump."""
    text = re.split(r", Timeout: |, Topology Description: ", str(exc), maxsplit=1)[0]
    text = re.sub(r" \(configured timeouts: [^)]*\)", "", text)
    return f"{type(exc).__name__}: {text[:300]}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


class MongoCacheBackend(CacheBackend):
    """Cache entries in a MongoDB collection, shared by every machine that reaches it.

    Results bigger than ``inline_limit`` bytes (arrays and the encoded result together) go
    to ``store`` (default: ``hither.content.stores.default_store()``, from hither-store), so a
    100 MB array result is fine. When the server does not answer, each operation is retried
    with backoff for up to ``retry_timeout`` seconds (a restart of a few seconds goes
    unnoticed); then it raises ``CacheUnavailableError`` naming the server, and for
    ``cooldown`` seconds further calls fail at once instead of each waiting again (a
    pipeline of many jobs is not slowed by a cache that is down). Usage::

        import hither as hi

        db = hi.Database(mongo_url="mongodb://127.0.0.1:27017", database="hither")
        with hi.Config(job_cache=hi.JobCache(database=db)):      # loads this backend
            result = add.run(x=1, y=2).wait()

        # or with options:
        from hither_cache import MongoCacheBackend
        jc = hi.JobCache(backend=MongoCacheBackend(db, retry_timeout=30, inline_limit=4 << 20))
    """

    name = "mongo"
    #: what the "did not answer" error names as the setting of how long to wait (the
    #: hither-cache command names its --retry-timeout option instead)
    retry_hint = "MongoCacheBackend(retry_timeout=...)"

    def __init__(self, database: Database, store: Optional[Store] = None, *,
                 inline_limit: int = 1 << 20, collection: str = "job_cache",
                 retry_timeout: float = 10.0, cooldown: float = 30.0,
                 connect_timeout: float = 2.0) -> None:
        if not isinstance(database, Database):
            raise ConfigError("MongoCacheBackend needs hi.Database(mongo_url=..., database=...), "
                              f"not {type(database).__name__}")
        if store is not None and not isinstance(store, Store):
            raise ConfigError(f"MongoCacheBackend(store=...) needs a hither Store, not {type(store).__name__}")
        if not 0 <= inline_limit <= MAX_INLINE_LIMIT:
            raise ConfigError(f"MongoCacheBackend(inline_limit={inline_limit}) must be between 0 and "
                              f"{MAX_INLINE_LIMIT} bytes (MongoDB documents are limited to 16 MB)")
        self.database = database
        self.collection_name = collection
        self.inline_limit = int(inline_limit)
        self.retry_timeout = seconds_option("retry_timeout", retry_timeout)
        self.cooldown = seconds_option("cooldown", cooldown)
        self.connect_timeout = seconds_option("connect_timeout", connect_timeout)
        self._store = store
        self._down_until = 0.0
        self._indexed = False
        pymongo = _pymongo()
        # a short server-selection timeout per attempt: the retry loop below bounds the total
        per_try_ms = int(1000 * max(0.2, min(self.connect_timeout, self.retry_timeout or 0.2)))
        try:
            self._client = pymongo.MongoClient(
                database.mongo_url, connect=False, appname="hither-cache",
                serverSelectionTimeoutMS=per_try_ms, connectTimeoutMS=per_try_ms)
        except (pymongo.errors.ConfigurationError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad MongoDB URL {redact_url(database.mongo_url)!r} for the job cache: "
                              f"{exc}") from None

    def __repr__(self) -> str:
        return f"MongoCacheBackend({self.describe()})"

    def describe(self) -> str:
        return (f"MongoDB cache at {redact_url(self.database.mongo_url)} "
                f"(database {self.database.database!r}, collection {self.collection_name!r})")

    def close(self) -> None:
        """Close the connection pool (the backend reconnects if used again)."""
        self._client.close()

    def __getstate__(self) -> dict:  # picklable: the client is rebuilt on the other side
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def __setstate__(self, state: dict) -> None:
        store = state.pop("_store")
        self.__init__(state["database"], store, inline_limit=state["inline_limit"],  # type: ignore[misc]
                      collection=state["collection_name"], retry_timeout=state["retry_timeout"],
                      cooldown=state["cooldown"], connect_timeout=state["connect_timeout"])

    # ------------------------------------------------------------------ connection
    def _collection(self) -> "Collection":
        coll = self._client[self.database.database][self.collection_name]
        if not self._indexed:
            coll.create_index("job_hash", unique=True, name="job_hash_unique")
            coll.create_index("created_at", name="created_at")  # for clear(older_than)
            self._indexed = True
        return coll

    def _check_cooldown(self) -> None:
        """Fail at once while the server is in its ``cooldown`` after not answering."""
        now = time.monotonic()
        if now < self._down_until:
            raise CacheUnavailableError(
                f"the {self.describe()} did not answer a moment ago; not trying again for "
                f"{self._down_until - now:.0f} s. Check that the MongoDB server is running and "
                "reachable from this machine.")

    def _call(self, what: str, op: Callable[["Collection"], T]) -> T:
        """Run ``op`` on the collection, retrying while the server does not answer."""
        pymongo = _pymongo()
        self._check_cooldown()
        start = time.monotonic()
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            budget = max(self.retry_timeout - (time.monotonic() - start), 0.2)
            try:
                # bounds each attempt as a whole (server selection, connect, a server that
                # accepts but never answers), not only its parts
                with pymongo.timeout(budget):
                    result = op(self._collection())
                if attempt > 1:
                    logger.info("%s answered again after %.1f s", self.describe(), time.monotonic() - start)
                return result
            except (pymongo.errors.ConnectionFailure,  # incl. AutoReconnect, network timeouts
                    pymongo.errors.ExecutionTimeout, pymongo.errors.WTimeoutError) as exc:
                left = self.retry_timeout - (time.monotonic() - start)
                if left <= 0:
                    self._down_until = time.monotonic() + self.cooldown
                    raise CacheUnavailableError(
                        f"the {self.describe()} did not answer for {time.monotonic() - start:.1f} s "
                        f"({attempt} tries) while trying to {what}: {_reason(exc)}. "
                        f"Check that the MongoDB server is running and reachable from this machine at "
                        f"{redact_url(self.database.mongo_url)} (host, port, firewall, credentials); "
                        f"{self.retry_hint} sets how long to wait.") from None
                logger.info("%s did not answer (%s); retrying (%.1f s left)", self.describe(),
                            type(exc).__name__, left)
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            except pymongo.errors.PyMongoError as exc:
                raise CacheError(f"the {self.describe()} refused to {what}: {type(exc).__name__}: "
                                 f"{exc}") from exc

    def _get_store(self) -> Store:
        if self._store is None:
            from hither.content.stores import default_store

            self._store = default_store()
        return self._store

    # ------------------------------------------------------------------ write
    def put(self, entry: CacheEntry) -> None:
        self._check_cooldown()  # before offloading content to the store for nothing
        arrays: List[MongoArray] = []
        inline = 0

        def sink(a: np.ndarray) -> int:
            nonlocal inline
            meta = npy.describe(a)
            if inline + a.nbytes <= self.inline_limit:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, a, allow_pickle=False)
                inline += buf.tell()
                arrays.append(MongoArray(npy=buf.getvalue(), **meta))
            else:  # content first, document after: a document never names missing content
                arrays.append(MongoArray(uri=self._get_store().put_array(a), **meta))
            return len(arrays) - 1

        payload = MongoPayload(result=encode(entry.result, sink), error=entry.error,
                               runtime_info=entry.runtime_info).model_dump_json().encode("utf-8")
        doc = MongoEntryDoc(**EntryMeta.of(entry), arrays=arrays,
                            size_bytes=len(payload) + sum(a.nbytes for a in arrays))
        if inline + len(payload) <= self.inline_limit:
            doc.payload_json = payload.decode("utf-8")
        else:
            doc.payload_uri = self._get_store().put_bytes(payload, name="payload.json")
        data = doc.model_dump(mode="python")
        data["status"] = entry.status.value
        dup = _pymongo().errors.DuplicateKeyError

        def upsert(coll: "Collection") -> None:
            # two first writers of one hash may both try to insert: the loser replaces
            for attempt in range(3):
                try:
                    coll.replace_one({"job_hash": entry.job_hash}, data, upsert=True)
                    return
                except dup:
                    if attempt == 2:
                        raise

        self._call(f"store the entry of job {entry.job_hash}", upsert)

    def delete(self, job_hash: str) -> bool:
        # content offloaded to the store stays there: it is shared by content address
        res = self._call(f"delete job {job_hash}", lambda c: c.delete_one({"job_hash": job_hash}))
        return res.deleted_count > 0

    def clear(self, older_than: Optional[float] = None) -> int:
        query = {} if older_than is None else {"created_at": {"$lt": older_than}}
        return self._call("clear the cache", lambda c: c.delete_many(query)).deleted_count

    # ------------------------------------------------------------------ read
    def get(self, job_hash: str) -> Optional[CacheEntry]:
        raw = self._call(f"read job {job_hash}",
                         lambda c: c.find_one({"job_hash": job_hash}, {"_id": 0}))
        if raw is None:
            return None
        try:
            return self._decode(raw)
        except Exception as exc:  # noqa: BLE001 - a damaged entry (or lost content) is a miss
            logger.warning("job cache entry %s in the %s is unreadable (%s: %s); treating it as a "
                           "miss (the next run of the job replaces it)", job_hash, self.describe(),
                           type(exc).__name__, exc)
            return None

    def _decode(self, raw: dict) -> CacheEntry:
        doc = MongoEntryDoc.model_validate(raw)
        if doc.payload_json is not None:
            payload = MongoPayload.model_validate_json(doc.payload_json)
        elif doc.payload_uri is not None:
            with self._get_store().open(doc.payload_uri) as f:
                payload = MongoPayload.model_validate_json(f.read())
        else:
            raise ValueError("the document has neither payload_json nor payload_uri")

        def source(ref: Any) -> np.ndarray:
            if type(ref) is not int or not 0 <= ref < len(doc.arrays):
                raise ValueError(f"bad array reference {ref!r}")
            a = doc.arrays[ref]
            if a.npy is not None:
                return npy.from_bytes(a.npy, a)
            if a.uri is None:
                raise ValueError(f"array {ref} has neither bytes nor a URI")
            return self._get_store().load_array(a.uri, mmap=True)

        return CacheEntry(**EntryMeta.of(doc), result=decode(payload.result, source),  # type: ignore[arg-type]
                          error=payload.error, runtime_info=payload.runtime_info)

    def iter_hashes(self) -> Iterator[str]:
        hashes = self._call("list the cache", lambda c: [d["job_hash"] for d in c.find(
            {}, {"job_hash": 1, "_id": 0})])
        return iter(hashes)

    def iter_summaries(self) -> Iterator[EntrySummary]:
        """Metadata and size of every entry, without reading any result."""
        docs = self._call("list the cache", lambda c: list(c.find({}, _SUMMARY_PROJECTION)))
        for d in docs:
            try:
                yield EntrySummary.model_validate(d)
            except Exception as exc:  # noqa: BLE001
                yield EntrySummary.unreadable(str(d.get("job_hash", "?")),
                                              f"unreadable: {type(exc).__name__}")

    def raw_document(self, job_hash: str) -> Optional[dict]:
        """The stored document as is (for tests and debugging)."""
        return self._call(f"read job {job_hash}", lambda c: c.find_one({"job_hash": job_hash}))
