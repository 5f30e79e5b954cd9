"""The shared secret and HMAC-SHA256 signatures over the canonical JSON of a job document.

The secret comes from ``secret=``, a secret file, or ``$HITHER_REMOTE_SECRET`` (in that
order). It is held in a ``Secret`` whose repr hides it, and never written to the bus, a
log or an error message::

    secret = load_secret()
    sig = sign(doc.signed_fields(), secret)
    assert verify(doc.signed_fields(), sig, secret)

A job document is trusted (by the resource before it runs it, by a client before it follows
it) only when ``job_problem`` finds nothing: its signature covers every field either side
acts on (``BusJob.SIGNED``: id, resource, function, ``job_hash``, the bus database's
name, the packed job, times, cache policy). The resource signs each outcome it writes the same way (``seal_outcome``), and the client
checks it before reporting (``outcome_problem``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import TYPE_CHECKING, Any, Optional

from hither.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .models import BusJob, BusOutcome

ENV_SECRET = "HITHER_REMOTE_SECRET"
ENV_SECRET_FILE = "HITHER_REMOTE_SECRET_FILE"


class Secret:
    """The shared secret; ``repr``/``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def key(self) -> bytes:
        return self._value


def load_secret(secret: "Optional[str | bytes | Secret]" = None, secret_file: Optional[str] = None) -> Secret:
    """The shared secret from the argument, the file, ``$HITHER_REMOTE_SECRET`` or
    ``$HITHER_REMOTE_SECRET_FILE``; ``ConfigError`` (without the secret) when none is set."""
    if isinstance(secret, Secret):
        return secret
    if secret is None and secret_file is None:
        secret = os.environ.get(ENV_SECRET) or None
        if secret is None:
            secret_file = os.environ.get(ENV_SECRET_FILE) or None
    if secret is None and secret_file is not None:
        try:
            with open(secret_file, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the hither-remote secret file {secret_file!r} "
                              f"({type(exc).__name__}); check the path and its permissions") from None
    if secret is None:
        raise ConfigError(f"hither-remote needs the secret shared by client and compute resource: "
                          f"set ${ENV_SECRET} (or ${ENV_SECRET_FILE}, or pass secret=/secret_file=) "
                          "to the same value on both sides")
    value = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(value) < 16:
        raise ConfigError("the hither-remote secret is shorter than 16 bytes; use a longer random "
                          "value, e.g. from: python -c 'import secrets; print(secrets.token_hex(32))'")
    return Secret(value)


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def sign(fields: Any, secret: Secret) -> str:
    """The HMAC-SHA256 (hex) of ``fields``' canonical JSON."""
    return hmac.new(secret.key(), canonical_json(fields), hashlib.sha256).hexdigest()


def verify(fields: Any, signature: Optional[str], secret: Secret) -> bool:
    """Whether ``signature`` is ``sign(fields, secret)`` (compared in constant time)."""
    if not signature or not isinstance(signature, str):
        return False
    try:
        expected = sign(fields, secret)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, signature)


def seal_outcome(job_id: str, status: str, outcome: "BusOutcome", secret: Secret) -> "BusOutcome":
    """A copy of ``outcome`` carrying ``status`` and the resource's signature for ``job_id``."""
    sealed = outcome.model_copy(update={"status": status, "signature": None})
    sealed.signature = sign(sealed.signed_fields(job_id), secret)
    return sealed


def outcome_problem(bus_job: "BusJob", secret: Secret) -> Optional[str]:
    """Why the outcome on ``bus_job`` cannot be trusted (None when the resource's signature
    verifies and matches the job's status). A cancelled job needs none: its outcome is
    not used."""
    outcome = bus_job.outcome
    if outcome is None:
        return "it has no outcome"
    if not outcome.signature:
        return "its outcome is not signed by a compute resource"
    if not verify(outcome.signed_fields(bus_job.id), outcome.signature, secret):
        return ("its outcome's signature does not match: it was altered on the bus, belongs to another "
                "job, or client and resource do not share the same $HITHER_REMOTE_SECRET")
    if outcome.status != bus_job.status.value:
        return (f"its status on the bus ({bus_job.status.value}) is not the one the resource signed "
                f"({outcome.status}): it was altered on the bus")
    return None


def job_problem(bus_job: "BusJob", secret: Secret, database: str) -> Optional[str]:
    """Why the job document ``bus_job`` cannot be trusted on the bus database ``database``
    (None when its signature verifies and it was signed for that database). A document of
    an older client, without the signed database name, is refused saying so."""
    if not bus_job.signature:
        return "the job document is not signed; the client needs $HITHER_REMOTE_SECRET"
    if bus_job.database is None:
        return ("the job document carries no signed database name (sent by an older hither-remote "
                "client?); upgrade the client and submit it again")
    if not verify(bus_job.signed_fields(), bus_job.signature, secret):
        return ("the job document's signature does not match: it was altered, or client and "
                "resource do not share the same $HITHER_REMOTE_SECRET")
    if bus_job.database != database:
        return (f"the job document was signed for the bus database {bus_job.database!r}, not this one "
                f"({database!r}): it was copied here")
    return None


def run_problem(bus_job: "BusJob", secret: Secret, database: str, resource_id: str) -> Optional[str]:
    """Why the resource ``resource_id`` must not run ``bus_job`` (``job_problem``, expired
    before it was started, addressed to another resource), or None."""
    why = job_problem(bus_job, secret, database)
    if why is not None:
        return why
    if bus_job.expires < time.time():
        return (f"the job expired {time.time() - bus_job.expires:.0f} s ago before it was started; "
                "submit it again")
    if bus_job.resource_id != resource_id:
        return "the job is addressed to another resource"
    return None
