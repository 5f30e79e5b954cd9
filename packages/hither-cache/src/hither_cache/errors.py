"""Errors of the cache backends (all are ``hither.errors.HitherError``)."""
from __future__ import annotations

from hither.errors import HitherError


class CacheError(HitherError):
    """A job-cache backend could not do what was asked (the message says why and what to do)."""


class CacheUnavailableError(CacheError):
    """The cache's server did not answer within the retry budget.

    ``hi.JobCache`` treats it as a miss on lookup (the job runs) and the job manager logs it
    on store (the result is still returned); the ``hither-cache`` command shows it as is.
    """
