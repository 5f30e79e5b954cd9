"""Names hither-container needs from hither-core's container interface, imported from
hither when it has them, else defined here (a shim until hither-core ships them)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from hither.errors import HitherError

try:
    from hither.errors import ContainerError, ContainerImageError
except ImportError:  # hither-core without the container errors yet
    class ContainerError(HitherError):  # type: ignore[no-redef]
        """A container engine failed to run a job (daemon down, OOM kill, crash, ...)."""

    class ContainerImageError(ContainerError):  # type: ignore[no-redef]
        """A job's container image is missing or cannot be pulled."""

try:
    from hither.models import ContainerOptions
except ImportError:  # hither-core without ContainerOptions yet
    from pydantic import BaseModel, Field

    class ContainerOptions(BaseModel):  # type: ignore[no-redef]
        """How a runner starts a job's container: environment, extra binds
        (``host:container[:ro]``), GPUs, network (``none`` by default), user (None: the
        calling uid:gid), memory limit (``512m``), warm reuse, runner-specific extras."""

        env: Dict[str, str] = Field(default_factory=dict)
        binds: List[str] = Field(default_factory=list)
        gpus: Optional[Union[int, str]] = None
        network: str = "none"
        user: Optional[str] = None
        memory: Optional[str] = None
        reuse: bool = False
        extra: Dict[str, Any] = Field(default_factory=dict)

__all__ = ["ContainerError", "ContainerImageError", "ContainerOptions"]
