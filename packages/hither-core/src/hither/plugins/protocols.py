"""What the lower layers of hither need to know of a hither function (``hither.plugins.protocols``).

A typing Protocol rather than an import of ``hither.function``: the function module sits
at the top (``f.run()`` starts jobs through the manager), and the modules below it —
jobs, handlers, packaging — only read these attributes.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

try:  # Python >= 3.8
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]


class JobFunction(Protocol):
    """A ``@hi.function``-decorated function as jobs, handlers and packaging see it."""

    name: str
    version: str
    raw: Callable[..., Any]
    module: str
    qualname: str
    source_file: Optional[str]
    container: Optional[str]
    additional_files: List[str]
    local_modules: List[str]
    opts: Dict[str, Any]
    signature: Any

    @property
    def no_resolve_input_files(self) -> bool: ...

    def code_bundle(self) -> Any: ...
