"""What the lower layers of hither and the plugins may use of a hither function and of a
job: the ``JobFunction`` and ``Job`` typing Protocols (``hither.plugins.protocols``).

Protocols rather than imports of ``hither.function`` and ``hither.jobs.job``: those sit
at the top (``f.run()`` starts jobs through the manager), and the modules below them —
handlers, the outside path, value checks, plugin packages — only read these attributes
and call these methods. ``lint-imports`` counts ``TYPE_CHECKING`` imports, so a module
below ``hither.jobs`` names a job only through ``Job`` here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

try:  # Python >= 3.8
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore[assignment]

if TYPE_CHECKING:  # pragma: no cover
    from hither.config_state import ConfigState
    from hither.models import RuntimeInfo
    from hither.status import JobStatus

#: runtime info as a handler gives it: a ``hi.RuntimeInfo``, a dict of its fields, or None
RuntimeInfoArg = Optional[Union["RuntimeInfo", Dict[str, Any]]]


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


class HandlerName(Protocol):
    """The part of a job's handler a job's lower layers read (the handler's own module
    knows its class)."""

    @property
    def name(self) -> str: ...


class Job(Protocol):
    """A job (``hi.Job``) as job handlers, the outside path and plugins see it.

    A handler receives it in ``JobHandler.submit`` with its arguments resolved
    (``resolved_kwargs``), and reports back exactly once: ``report_running`` (optional,
    may repeat with more runtime info), then one of ``report_result``, ``report_error``,
    ``report_cancelled``, from any thread. The first end reported wins; later reports
    are ignored (``hither.jobs.states``).

    ``handler_data`` is the slot of the handler running the job: hither-core never reads
    it; the handler keeps there what its ``cancel`` needs (a queue key, a running
    process) and narrows it with ``isinstance`` when it reads it back.
    """

    id: str
    function: JobFunction
    kwargs: Dict[str, Any]
    resolved_kwargs: Optional[Dict[str, Any]]
    config: "ConfigState"
    container: Optional[str]
    handler_data: object

    @property
    def handler(self) -> HandlerName: ...

    @property
    def function_name(self) -> str: ...

    @property
    def function_version(self) -> str: ...

    @property
    def job_hash(self) -> str: ...

    @property
    def code_identity(self) -> str: ...

    @property
    def from_cache(self) -> bool: ...

    def get_status(self) -> "JobStatus": ...

    def is_done(self) -> bool: ...

    def get_error(self) -> Optional[BaseException]: ...

    def get_runtime_info(self) -> "RuntimeInfo": ...

    def report_running(self, runtime_info: RuntimeInfoArg = None) -> None: ...

    def report_result(self, value: Any, runtime_info: RuntimeInfoArg = None) -> None: ...

    def report_error(self, error: BaseException, runtime_info: RuntimeInfoArg = None) -> None: ...

    def report_cancelled(self) -> None: ...

    def merge_runtime_info(self, runtime_info: RuntimeInfoArg) -> None:
        """What the handler knows of the job before or while it runs (a batch id, why it
        still waits as ``pending_reason``), shown at once by ``get_runtime_info()``."""
