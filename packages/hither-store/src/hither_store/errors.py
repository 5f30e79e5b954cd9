"""Errors raised by hither-store. Each says what was wrong and what to do about it."""
from __future__ import annotations

from hither.errors import HitherError
from hither.plugins.interfaces import ContentNotFoundError


class StoreError(HitherError):
    """A content store could not do what was asked (bad location, unstorable value, ...)."""


class BlobNotFoundError(StoreError, ContentNotFoundError):
    """The store holds no content for a ``sha1://`` URI (a ``ContentNotFoundError``, as every
    ``Store`` raises then, hence also a ``FileNotFoundError``)."""


class StoreIntegrityError(StoreError):
    """Content does not match the sha1 it is stored or addressed under; it is never served."""


class StoreWriteError(StoreError, OSError):
    """The store (or its local cache) could not write a blob: a read-only or full disk, no
    permission, something else at a blob's place. Also an ``OSError``, as before."""
