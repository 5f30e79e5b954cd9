"""Errors raised by hither-store. Each says what was wrong and what to do about it."""
from __future__ import annotations

from hither.errors import HitherError


class StoreError(HitherError):
    """A content store could not do what was asked (bad location, unstorable value, ...)."""


class BlobNotFoundError(StoreError, FileNotFoundError):
    """The store holds no content for a ``sha1://`` URI."""


class StoreIntegrityError(StoreError):
    """Content does not match the sha1 it is stored or addressed under; it is never served."""


class StoreWriteError(StoreError, OSError):
    """The store (or its local cache) could not write a blob: a read-only or full disk, no
    permission, something else at a blob's place. Also an ``OSError``, as before."""
