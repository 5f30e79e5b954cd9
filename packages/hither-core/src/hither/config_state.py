"""The configuration in force (``hither.config_state``): a frozen snapshot per context.

``hi.Config`` blocks (``hither.config``) set it; every Job keeps the snapshot taken at
``.run()``. The state lives in a ``contextvars.ContextVar``: a new thread starts from the
defaults, an asyncio task from the context it was created in.
"""
from __future__ import annotations

import contextvars
import dataclasses
from typing import Any, Optional, Union


@dataclasses.dataclass(frozen=True)
class ConfigState:
    """The options in force; a snapshot is attached to every Job at ``.run()``."""

    # a hither.plugins.interfaces.JobHandler (plugins sit above this module), or None: the
    # process-wide DefaultJobHandler
    job_handler: Any = None
    container: Union[bool, str, None] = None  # True: the function's own container; str: this image
    job_cache: Any = None  # a hither.jobs.cache_policy.JobCache (which sits above jobs), or None
    download_results: Optional[bool] = None
    job_timeout: Optional[float] = None
    force_run: bool = False
    container_engine: Optional[str] = None  # runner name ("docker", "apptainer"); None: preference order
    container_options: Any = None  # a hither.models.ContainerOptions, or None for the defaults
    retry: Any = None  # a hither.retry.Retry, or None: the function's, else the default policy


_DEFAULT = ConfigState()
_current: contextvars.ContextVar[ConfigState] = contextvars.ContextVar("hither_config", default=_DEFAULT)


def current() -> ConfigState:
    """The configuration in force here."""
    return _current.get()
