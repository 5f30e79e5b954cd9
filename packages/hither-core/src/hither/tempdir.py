"""``hi.TemporaryDirectory``: a scratch folder that is removed afterwards."""
from __future__ import annotations

import os
from typing import Any, Optional


class TemporaryDirectory:
    """``with hi.TemporaryDirectory() as tmpdir:`` yields a fresh folder path (a str) under
    ``$HITHER_TEMP_DIR`` (else the system temp folder) and removes it at the end, unless
    ``remove=False``."""

    def __init__(self, prefix: str = "hither-", remove: bool = True) -> None:
        self._prefix = prefix
        self._remove = remove
        self.path: Optional[str] = None

    def __enter__(self) -> str:
        import tempfile  # here, not at ``import hither`` (it and shutil pull in ~10 modules)

        base = os.environ.get("HITHER_TEMP_DIR") or None
        if base:
            os.makedirs(base, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=self._prefix, dir=base)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self._remove and self.path:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)
