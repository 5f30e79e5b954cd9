"""The MongoDB backend against a real MongoDB-protocol server on loopback (SecantusDB)."""
from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hither as hi
from hither.plugins import registry
from hither.errors import ConfigError, HitherError, PluginNotInstalledError
from hither.models import JobStatus
from hither.testing.cache_conformance import CacheBackendConformance, assert_same_value, entry, job_hash
from hither_cache import CacheUnavailableError
from hither_cache.mongo_backend import MongoCacheBackend, redact_url

pytest.importorskip("pymongo", reason="the MongoDB backend needs: pip install 'hither-cache[mongo]'")


@pytest.fixture
def store(tmp_path: Path):
    hither_store = pytest.importorskip("hither_store", reason="the content store needs hither-store")
    return hither_store.Store(str(tmp_path / "store"))


class TestMongoConformance(CacheBackendConformance):
    stress_array_bytes = 64 * 1024  # inline; the server takes ~10 ms a write: keep it small
    stress_rounds = 3
    large_array_bytes = 4 * 1024 * 1024  # over inline_limit: goes through the store

    @pytest.fixture
    def cache_spec(self, mongo_db, store):
        return MongoCacheBackend, {"database": mongo_db, "store": store, "retry_timeout": 5.0}


@pytest.fixture
def backend(mongo_db, store) -> MongoCacheBackend:
    b = MongoCacheBackend(mongo_db, store=store)
    yield b
    b.close()


def test_registered_as_mongo_cache(mongo_db) -> None:
    assert registry.load("caches", "mongo") is MongoCacheBackend
    jc = hi.JobCache(database=mongo_db)
    assert isinstance(jc.backend, MongoCacheBackend)
    assert mongo_db.database in repr(jc)


@hi.function("hc_mongo_twice", "0.1.0")
def hc_mongo_twice(x: int) -> tuple:
    print("ran")
    return (x, np.arange(x, dtype=np.int32))


def test_job_cache_with_a_database_hits(mongo_db) -> None:
    try:
        with hi.Config(job_cache=hi.JobCache(database=mongo_db)):
            first = hc_mongo_twice.run(x=4)
            first.wait()
            again = hc_mongo_twice.run(x=4)
            result = again.wait()
        assert again.get_runtime_info().cached and not first.get_runtime_info().cached
        assert again.get_runtime_info().stdout == "ran\n"
        assert_same_value(result, (4, np.arange(4, dtype=np.int32)))
    finally:
        hi.reset()


def test_default_store_takes_what_does_not_fit(mongo_db, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hither_store")
    from hither.content.stores import default_store, set_default_store

    monkeypatch.setenv("HITHER_STORE_URL", str(tmp_path / "default-store"))
    set_default_store(None)
    try:
        b = MongoCacheBackend(mongo_db, inline_limit=1024)
        a = np.arange(10_000.0)
        b.put(entry("ds", result=a))
        uri = b.raw_document(job_hash("ds"))["arrays"][0]["uri"]
        assert default_store().exists(uri)
        assert np.array_equal(b.get(job_hash("ds")).result, a)
    finally:
        set_default_store(None)


def test_unique_index_and_upserts(backend: MongoCacheBackend) -> None:
    e = entry("u", result=1)
    backend.put(e)
    backend.put(e.model_copy(update={"result": 2}))
    coll = backend._collection()
    assert coll.count_documents({"job_hash": e.job_hash}) == 1
    unique = [ix for ix in coll.index_information().values()
              if ix["key"] == [("job_hash", 1)] and ix.get("unique")]
    assert unique, coll.index_information()
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"job_hash": e.job_hash})
    got = backend.get(e.job_hash)
    assert got is not None and got.result == 2


def test_small_arrays_are_binary_in_the_document_not_base64(backend: MongoCacheBackend) -> None:
    a = np.arange(1000, dtype=np.float64)
    backend.put(entry("bin", result={"a": a}))
    doc = backend.raw_document(job_hash("bin"))
    assert doc is not None and doc["payload_uri"] is None
    assert isinstance(doc["arrays"][0]["npy"], bytes) and len(doc["arrays"][0]["npy"]) >= a.nbytes
    assert len(doc["payload_json"]) < 2000  # the JSON only refers to the array
    assert doc["status"] == "finished" and doc["function_name"] == "f"


def test_100_mb_array_goes_to_the_store(backend: MongoCacheBackend, store) -> None:
    a = np.random.default_rng(1).standard_normal(100 * 1024 * 1024 // 8)
    backend.put(entry("big", result=(a, "label")))
    doc = backend.raw_document(job_hash("big"))
    import bson

    assert len(bson.encode(doc)) < 64 * 1024
    uri = doc["arrays"][0]["uri"]
    assert uri.startswith("sha1://") and store.exists(uri)
    got = backend.get(job_hash("big"))
    assert got is not None
    assert_same_value(got.result, (a, "label"))


def test_large_payload_goes_to_the_store(backend: MongoCacheBackend, store) -> None:
    text = "x" * (3 * 1024 * 1024)
    e = entry("payload", result=[text], runtime_info=hi.RuntimeInfo(stdout=text))
    backend.put(e)
    doc = backend.raw_document(e.job_hash)
    assert doc["payload_json"] is None and store.exists(doc["payload_uri"])
    got = backend.get(e.job_hash)
    assert got is not None and got.result == [text] and got.runtime_info.stdout == text


def test_content_missing_from_the_store_is_a_miss(mongo_db, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    hither_store = pytest.importorskip("hither_store")
    b = MongoCacheBackend(mongo_db, store=hither_store.Store(str(tmp_path / "s1")), inline_limit=0)
    b.put(entry("lost", result=np.arange(10)))
    b2 = MongoCacheBackend(mongo_db, store=hither_store.Store(str(tmp_path / "s2")))  # another store
    with caplog.at_level(logging.WARNING, logger="hither.cache"):
        assert b2.get(job_hash("lost")) is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_damaged_document_is_a_miss_with_warning(backend: MongoCacheBackend,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    backend.put(entry("dmg", result=1))
    backend._collection().update_one({"job_hash": job_hash("dmg")}, {"$set": {"payload_json": "{"}})
    with caplog.at_level(logging.WARNING, logger="hither.cache"):
        assert backend.get(job_hash("dmg")) is None
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    backend.put(entry("dmg", result=2))
    assert backend.get(job_hash("dmg")).result == 2


def test_summaries_do_not_read_results(backend: MongoCacheBackend) -> None:
    backend.put(entry("s1", result=np.arange(100), created_at=5.0))
    (s,) = list(backend.iter_summaries())
    assert s.job_hash == job_hash("s1") and s.created_at == 5.0 and s.size_bytes >= 800
    assert s.status == JobStatus.FINISHED


def test_options_are_checked(mongo_db) -> None:
    with pytest.raises(ConfigError):
        MongoCacheBackend(mongo_db, inline_limit=20 * 1024 * 1024)
    with pytest.raises(ConfigError):
        MongoCacheBackend("mongodb://127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bad MongoDB URL"):
        MongoCacheBackend(hi.Database(mongo_url="mongodb://a:b@c:d:e/"))


def test_missing_pymongo_says_what_to_install(mongo_db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)  # import pymongo now raises ImportError
    with pytest.raises(PluginNotInstalledError, match=r"pip install 'hither-cache\[mongo\]'"):
        MongoCacheBackend(mongo_db)


def test_pickles_without_its_connection(backend: MongoCacheBackend) -> None:
    import pickle

    backend.put(entry("pk", result=(1, 2)))
    other = pickle.loads(pickle.dumps(backend))
    assert other is not backend and other.describe() == backend.describe()
    assert other.get(job_hash("pk")).result == (1, 2)
    other.close()


def test_password_is_not_shown() -> None:
    assert redact_url("mongodb://user:s3cret@db.example:27017/x") == "mongodb://user:***@db.example:27017/x"
    b = MongoCacheBackend(hi.Database(mongo_url="mongodb://user:s3cret@127.0.0.1:1/"))
    assert "s3cret" not in b.describe()


# ---------------------------------------------------------------------- outages
def test_no_server_gives_a_clear_error_quickly(dead_mongo_url: str) -> None:
    url = dead_mongo_url
    b = MongoCacheBackend(hi.Database(mongo_url=url, database="x"), retry_timeout=1.0, cooldown=30)
    t0 = time.monotonic()
    with pytest.raises(CacheUnavailableError) as info:
        b.get(job_hash("a"))
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert url in msg and "running and reachable" in msg
    assert isinstance(info.value, HitherError)
    # during the cooldown, further calls fail at once instead of waiting again
    t0 = time.monotonic()
    with pytest.raises(CacheUnavailableError, match="not trying again"):
        b.put(entry("a", result=1))
    assert time.monotonic() - t0 < 0.5


def test_put_during_the_cooldown_does_not_offload_content(dead_mongo_url: str, store) -> None:
    b = MongoCacheBackend(hi.Database(mongo_url=dead_mongo_url, database="x"), store=store,
                          inline_limit=0, retry_timeout=0.5, cooldown=30)
    with pytest.raises(CacheUnavailableError):
        b.get(job_hash("a"))
    with pytest.raises(CacheUnavailableError, match="not trying again"):
        b.put(entry("a", result=np.arange(1000.0)))
    assert store.stats().count == 0  # nothing was uploaded for an entry that cannot be written


def test_a_server_that_never_answers_is_bounded_too() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections (backlog), never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"mongodb://127.0.0.1:{listener.getsockname()[1]}/?directConnection=true"
        b = MongoCacheBackend(hi.Database(mongo_url=url, database="x"), retry_timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(CacheUnavailableError):
            b.get(job_hash("hang"))
        assert time.monotonic() - t0 < 5
        b.close()


def test_outage_short_is_retried_long_is_a_clear_error(private_mongo, store) -> None:
    db = hi.Database(mongo_url=private_mongo.url, database="outage")
    b = MongoCacheBackend(db, store=store, retry_timeout=1.5, cooldown=0)
    e = entry("o", result={"a": np.arange(100.0)}, created_at=1.0)
    b.put(e)
    private_mongo.stop()

    # long outage: a clear error within the budget, for reads and writes
    t0 = time.monotonic()
    with pytest.raises(CacheUnavailableError) as info:
        b.get(e.job_hash)
    assert 1.4 <= time.monotonic() - t0 < 6
    assert private_mongo.url in str(info.value)
    with pytest.raises(CacheUnavailableError):
        b.put(entry("o", result="never written", created_at=2.0))

    # short outage: the server comes back while we retry
    b.retry_timeout = 20.0
    restart = threading.Timer(0.5, private_mongo.start, kwargs={"wait": False})
    t0 = time.monotonic()
    restart.start()
    try:
        got = b.get(e.job_hash)
    finally:
        restart.join()
    assert time.monotonic() - t0 >= 0.5  # it waited for the restart
    assert got is not None and got.created_at == 1.0  # the failed put left nothing behind
    assert_same_value(got.result, {"a": np.arange(100.0)})
    b.put(entry("o2", result=2))
    assert b.get(job_hash("o2")).result == 2
    b.close()


def test_job_cache_treats_an_unreachable_server_as_a_miss(dead_mongo_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """hi.JobCache.lookup turns a read error into a miss (the job runs); the manager logs a
    failed store; the result is returned either way."""
    db = hi.Database(mongo_url=dead_mongo_url, database="x")
    jc = hi.JobCache(backend=MongoCacheBackend(db, retry_timeout=0.5))

    @hi.function("add_unreachable", "0.1.0")
    def add_unreachable(x: int, y: int) -> int:
        return x + y

    try:
        with caplog.at_level(logging.WARNING), hi.Config(job_cache=jc):
            assert add_unreachable.run(x=1, y=2).wait() == 3
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "could not be read" in text and "could not store" in text and db.mongo_url in text
    finally:
        hi.reset()
