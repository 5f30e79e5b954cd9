"""The serialized forms of a cache entry: ``entry.json`` of the file backend and the MongoDB
document. Results are encoded with ``hither.values.codec.encode``; arrays never go inside
the JSON: the encoded result refers to them by their index in ``arrays``.
"""
from __future__ import annotations

from typing import Any, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from hither.models import CacheEntry, ErrorInfo, JobStatus, RuntimeInfo

#: bumped when a format changes incompatibly; entries of another version are misses
SCHEMA_VERSION = 1


class EntryMeta(BaseModel):
    """What every stored form records besides the result (also what ``hither-cache ls`` shows)."""

    model_config = ConfigDict(extra="ignore")

    job_hash: str
    function_name: str
    function_version: str
    status: JobStatus
    code_hash: Optional[str] = None
    hither_version: str = ""
    created_at: float

    @classmethod
    def of(cls, entry: CacheEntry) -> dict:
        """The metadata fields of ``entry`` as keyword arguments."""
        return {k: getattr(entry, k) for k in EntryMeta.model_fields}


class EntrySummary(EntryMeta):
    """One line of ``hither-cache ls``: metadata and the bytes the entry occupies.

    ``problem`` is set (and the other fields are guesses) for an entry that cannot be read.
    """

    size_bytes: int = 0
    problem: Optional[str] = None

    @classmethod
    def unreadable(cls, job_hash: str, problem: str, created_at: float = 0.0,
                   size_bytes: int = 0) -> "EntrySummary":
        """The summary of an entry whose metadata cannot be read."""
        return cls(job_hash=job_hash, function_name="?", function_version="?", status="error",
                   created_at=created_at, size_bytes=size_bytes, problem=problem)


# ------------------------------------------------------------------------ file backend
class ArrayMeta(BaseModel):
    """How an array's ``.npy`` data is laid out (see ``hither_cache.npy``)."""

    dtype: Any  # np.lib.format.dtype_to_descr(): a str, or a list for structured dtypes
    shape: List[int]
    fortran_order: bool = False
    nbytes: int


class ArrayFile(ArrayMeta):
    """An array of a file entry, saved as ``.npy`` beside ``entry.json``."""

    file: str


class FileEntryDoc(EntryMeta):
    """``<root>/<hash[:2]>/<hash>/entry.json``."""

    format: Literal["hither-cache-entry"] = "hither-cache-entry"
    schema_version: Literal[1] = SCHEMA_VERSION
    result: Any = None  # encode() form; {"_hither": "ndarray", "ref": i} -> arrays[i]
    arrays: List[ArrayFile] = Field(default_factory=list)
    error: Optional[ErrorInfo] = None
    runtime_info: RuntimeInfo = Field(default_factory=RuntimeInfo)


# ------------------------------------------------------------------------ MongoDB backend
class MongoArray(ArrayMeta):
    """An array of a MongoDB entry: ``.npy`` bytes inside the document (BSON binary, not
    base64) when small, else a ``sha1://`` URI in the content store."""

    npy: Optional[bytes] = None
    uri: Optional[str] = None


class MongoPayload(BaseModel):
    """The variable-size part of an entry, kept as one JSON string: inline in the document
    when small, else in the content store. A string rather than a sub-document because
    hither values may hold dict keys MongoDB dislikes ("$x", "a.b") and ints beyond int64."""

    result: Any = None
    error: Optional[ErrorInfo] = None
    runtime_info: RuntimeInfo = Field(default_factory=RuntimeInfo)


class MongoEntryDoc(EntryMeta):
    """One document of the ``job_cache`` collection (unique index on ``job_hash``)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    payload_json: Optional[str] = None
    payload_uri: Optional[str] = None
    arrays: List[MongoArray] = Field(default_factory=list)
    size_bytes: int = 0
