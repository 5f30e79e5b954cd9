"""The documents on the job bus (pydantic models): a job, its outcome, a resource's heartbeat."""
from __future__ import annotations

import enum
from typing import Any, ClassVar, Dict, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field


class BusStatus(str, enum.Enum):
    """Where a job is on the bus. ``refused``: the resource would not run it (bad signature,
    expired, replayed); the client sees it as an error."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    ERROR = "error"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    REFUSED = "refused"


#: statuses a job never leaves
FINAL = (BusStatus.FINISHED, BusStatus.ERROR, BusStatus.CANCELLED, BusStatus.REFUSED)


class BusOutcome(BaseModel):
    """What the resource sends back: ``hither.outside.documents.pack_outputs``'s document (result,
    error, runtime; arrays and files as store URIs) and the runner's exit code, or a
    message when the job could not run at all."""

    packed: Dict[str, Any] = Field(default_factory=dict)
    exit_code: Optional[int] = None
    message: Optional[str] = None
    #: with ``message``: "timeout" when the job ran past its job_timeout, else None
    kind: Optional[str] = None
    #: the status the resource wrote with this outcome (signed: the bus's ``status`` field is not)
    status: Optional[str] = None
    #: HMAC of ``signed_fields(job id)`` made by the resource with the shared secret
    signature: Optional[str] = None

    SIGNED: ClassVar[Tuple[str, ...]] = ("packed", "exit_code", "message", "kind", "status")

    def signed_fields(self, job_id: str) -> Dict[str, Any]:
        """What the signature covers: the outcome and the id of the job it belongs to (an
        outcome copied onto another job does not verify)."""
        return {"job_id": job_id, **{k: getattr(self, k) for k in self.SIGNED}}


class CachePolicy(BaseModel):
    """The client's job-cache settings for one job, for the resource's job cache: a
    ``force_run`` job is not answered from it; ``cache_failing``/``rerun_failing`` (None:
    the client has no job cache, the resource's settings apply) say whether a recorded
    failure may be the answer."""

    force_run: bool = False
    cache_failing: Optional[bool] = None
    rerun_failing: Optional[bool] = None


class BusJob(BaseModel):
    """One job on the bus (collection ``jobs``). The fields listed in ``SIGNED`` are covered
    by ``signature``, an HMAC made with the secret that client and resource share."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    resource_id: str
    function_name: str
    job_hash: Optional[str] = None     # hither's hash of function and arguments
    #: the bus database the client sent it to (signed: a copy on another database is refused)
    database: Optional[str] = None
    status: BusStatus = BusStatus.QUEUED
    document: Dict[str, Any]            # hither.outside.path.prepare_document's packed job
    created: float
    expires: float                      # the resource refuses the job after this time
    signature: Optional[str] = None
    updated: float = 0.0
    lease_owner: Optional[str] = None
    lease_expires: Optional[float] = None
    attempts: int = 0
    started: Optional[float] = None
    ended: Optional[float] = None
    outcome: Optional[BusOutcome] = None
    collected: bool = False             # the client has reported the outcome to its Job
    cache_policy: Optional[CachePolicy] = None
    #: set on a document read back that is no ``BusJob`` (not stored): why
    problem: Optional[str] = Field(default=None, exclude=True)

    SIGNED: ClassVar[Tuple[str, ...]] = ("id", "resource_id", "function_name", "job_hash", "database", "document",
                                         "created", "expires", "cache_policy")

    def signed_fields(self) -> Dict[str, Any]:
        data = self.model_dump(mode="json", include=set(self.SIGNED))
        return {k: data.get(k) for k in self.SIGNED}

    def to_mongo(self) -> Dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class ResourceHeartbeat(BaseModel):
    """One serving process of a resource (collection ``resources``), renewed while it runs."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")        # resource id + owner
    resource_id: str
    owner: str                          # host:pid:random
    started: float
    last_seen: float
    running: int = 0
    capacity: int = 1
    stopped: bool = False
