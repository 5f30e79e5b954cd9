"""Worker of the multi-process conformance test (no pytest import: it runs in spawned
processes, which should start fast)."""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from hither.models import CacheEntry, JobStatus, RuntimeInfo


def make_entry(job_hash: str, writer: int, round_: int, array_bytes: int) -> CacheEntry:
    """An entry whose parts all say who wrote it, so a mixed or torn read is detectable."""
    n = max(1, array_bytes // 8)
    tag = writer * 1000 + round_
    return CacheEntry(
        job_hash=job_hash, function_name="stress", function_version=f"{writer}.{round_}",
        status=JobStatus.FINISHED,
        result={"tag": tag, "pair": (writer, round_), "data": np.full(n, tag, dtype=np.int64),
                "small": np.full(3, tag, dtype=np.int32)},
        runtime_info=RuntimeInfo(stdout=f"writer {tag}\n" * 50, status=JobStatus.FINISHED),
        code_hash=f"code-{tag}", created_at=time.time())


def check_entry(entry: CacheEntry, job_hash: str, array_bytes: int) -> List[str]:
    """Problems of an entry read back while others write the same key (empty: consistent)."""
    problems: List[str] = []
    try:
        r = entry.result
        tag = r["tag"]
        writer, round_ = divmod(tag, 1000)
        n = max(1, array_bytes // 8)
        if entry.job_hash != job_hash:
            problems.append(f"hash {entry.job_hash} != {job_hash}")
        if r["pair"] != (writer, round_):
            problems.append(f"pair {r['pair']!r} does not match tag {tag}")
        if r["data"].shape != (n,) or not (r["data"] == tag).all():
            problems.append(f"data of {job_hash} is not all {tag}")
        if not (r["small"] == tag).all():
            problems.append(f"small of {job_hash} is not all {tag}")
        if entry.function_version != f"{writer}.{round_}" or entry.code_hash != f"code-{tag}":
            problems.append(f"metadata of {job_hash} does not match tag {tag}")
        if entry.runtime_info.stdout != f"writer {tag}\n" * 50:
            problems.append(f"runtime info of {job_hash} does not match tag {tag}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{job_hash}: {type(exc).__name__}: {exc}")
    return problems


def stress_worker(spec: Tuple[Any, Dict[str, Any]], writer: int, hashes: List[str], rounds: int,
                  array_bytes: int, barrier: Any = None) -> List[str]:
    """Write and read ``hashes`` ``rounds`` times; return every inconsistency seen.
    ``barrier`` (if given) is waited on first, so that all workers overlap."""
    cls, kwargs = spec
    backend = cls(**kwargs)
    problems: List[str] = []
    # a backend warns when it meets a damaged entry: with whole-entry writes that never happens
    warned = _WarningCollector()
    cache_logger = logging.getLogger("hither.cache")
    cache_logger.addHandler(warned)
    try:
        if barrier is not None:
            barrier.wait(timeout=120)
        for r in range(rounds):
            for i, h in enumerate(hashes):
                if (i + writer + r) % 2 == 0:
                    backend.put(make_entry(h, writer, r, array_bytes))
                got = backend.get(h)
                if got is not None:
                    problems += check_entry(got, h, array_bytes)
    finally:
        cache_logger.removeHandler(warned)
    return problems + [f"writer {writer} was warned: {m}" for m in warned.messages]


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def stress_process(spec: Tuple[Any, Dict[str, Any]], writer: int, hashes: List[str], rounds: int,
                   array_bytes: int, barrier: Any, results: Any) -> None:
    """Entry point of one stress process: puts ``(writer, problems)`` on ``results``."""
    try:
        problems = stress_worker(spec, writer, hashes, rounds, array_bytes, barrier)
    except BaseException as exc:  # noqa: BLE001 - report, never hang the parent
        problems = [f"writer {writer}: {type(exc).__name__}: {exc}"]
    results.put((writer, problems))
