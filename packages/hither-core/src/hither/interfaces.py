"""The plugin interfaces hither-core declares and the other hither packages implement.

Each interface is an ABC with a ``name`` class attribute: the name a plugin is registered
under in its entry-point group (see ``hither.registry``). A plugin package declares, e.g.::

    [project.entry-points."hither.caches"]
    file = "hither_cache.file_backend:FileCacheBackend"

and hither-core finds it lazily, never importing a plugin package by name.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Dict, Iterator, Optional

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .job import Job
    from .models import CacheEntry


class JobHandler(abc.ABC):
    """Runs jobs whose inputs are ready. Entry-point group ``hither.job_handlers``.

    The job manager calls :meth:`submit` with a job whose arguments are resolved
    (``job.resolved_kwargs``); the handler reports back through the job:
    ``job.report_running()``, then exactly one of ``job.report_result(value, runtime_info)``,
    ``job.report_error(exc, runtime_info)`` or ``job.report_cancelled()``. It may call them
    from any thread. Example::

        class InlineHandler(JobHandler):
            name = "inline"

            def submit(self, job, inline):
                job.report_running()
                try:
                    job.report_result(job.function.raw(**job.resolved_kwargs), RuntimeInfo())
                except Exception as exc:
                    job.report_error(exc, RuntimeInfo())

            def cancel(self, job):
                return False

        with hi.Config(job_handler=InlineHandler()):
            assert add.run(x=1, y=2).wait() == 3
    """

    name: ClassVar[str] = ""
    #: whether jobs leave this machine's file system (then Files and large arrays go
    #: through the store); the local handlers say False.
    crosses_machine: ClassVar[bool] = False
    #: whether this handler can enforce ``hi.Config(job_timeout=...)`` by stopping the job
    supports_timeout: ClassVar[bool] = False

    @abc.abstractmethod
    def submit(self, job: "Job", inline: bool) -> None:
        """Start ``job`` (or queue it). ``inline`` is True when called from the user's own
        thread at ``.run()``: an in-process handler may run the job right there."""

    @abc.abstractmethod
    def cancel(self, job: "Job") -> bool:
        """Stop ``job`` if queued or running; report it cancelled; True if it was stopped."""

    def shutdown(self, wait: bool = True) -> None:
        """Release workers and connections. Queued jobs are reported cancelled."""

    def check_config(self, job: "Job") -> None:
        """Raise ``ConfigError`` at ``.run()`` when this handler cannot honour the job's
        configuration (e.g. a ``job_timeout`` it cannot enforce)."""


class CacheBackend(abc.ABC):
    """Stores job-cache entries by job hash. Entry-point group ``hither.caches``.

    ``hi.JobCache`` holds the policy (force_run, cache_failing, ...); a backend only stores.
    Writes must be atomic: a reader sees a whole entry or none. A backend returns None for an
    entry it cannot read (and logs a warning) rather than raising. Example::

        backend = registry.load("caches", "file")(path="/tmp/jc")
        backend.put(entry)
        assert backend.get(entry.job_hash).result == entry.result
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def get(self, job_hash: str) -> Optional["CacheEntry"]:
        """The entry for ``job_hash``, or None when absent or unreadable."""

    @abc.abstractmethod
    def put(self, entry: "CacheEntry") -> None:
        """Store ``entry`` under ``entry.job_hash``, replacing any older one, atomically."""

    @abc.abstractmethod
    def delete(self, job_hash: str) -> bool:
        """Remove one entry; True if it existed."""

    @abc.abstractmethod
    def iter_hashes(self) -> Iterator[str]:
        """Every stored job hash (for ``hither-cache ls``/``stats``/``clear``)."""

    def clear(self, older_than: Optional[float] = None) -> int:
        """Delete entries (created before the epoch time ``older_than`` if given); count them."""
        n = 0
        for h in list(self.iter_hashes()):
            if older_than is not None:
                entry = self.get(h)
                if entry is not None and entry.created_at >= older_than:
                    continue
            n += int(self.delete(h))
        return n

    def describe(self) -> str:
        """One line saying where entries live (for logs and the CLI)."""
        return self.name


class Store(abc.ABC):
    """Content-addressed storage of files and arrays. Entry-point group ``hither.stores``.

    Content is addressed by ``sha1://<40 hex>/<name>`` URIs, stored once, readable from any
    machine that reaches the store. Example::

        store = registry.load("stores", "fsspec")("memory://hither")
        uri = store.put_bytes(b"hello", name="greeting.txt")
        with store.open(uri) as f:
            assert f.read() == b"hello"
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def put_file(self, path: "str | Path", name: Optional[str] = None) -> str:
        """Store a file's content; return its URI (named ``name``, default the file's name)."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes, name: str = "data") -> str:
        """Store bytes; return their URI."""

    @abc.abstractmethod
    def put_array(self, array: "np.ndarray") -> str:
        """Store an array (as .npy); return its URI."""

    @abc.abstractmethod
    def get_path(self, uri: str) -> str:
        """A local path holding the content of ``uri`` (downloaded and verified if needed)."""

    @abc.abstractmethod
    def open(self, uri: str) -> IO[bytes]:
        """A binary file object reading the content of ``uri``."""

    @abc.abstractmethod
    def load_array(self, uri: str, mmap: bool = True) -> "np.ndarray":
        """The array stored under ``uri`` (memory-mapped where the store is local)."""

    @abc.abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether the content of ``uri`` is in the store."""

    @abc.abstractmethod
    def verify(self, uri: str) -> bool:
        """Re-hash the stored content; True when it matches ``uri``."""


class ContainerRunner(abc.ABC):
    """Runs a prepared job directory inside a container. Group ``hither.container_runners``.

    The job directory holds ``spec.json``, ``args.json`` (+ arrays), ``code.zip`` and
    ``runner.py``; the runner mounts it and runs ``python3 runner.py /hither/job`` in the
    image with networking off, then the results are read back from the directory. Example::

        runner = registry.load("container_runners", "docker")()
        exit_code = runner.run("docker://hither-test/python-numpy:3.11", job_dir, timeout=60)
    """

    name: ClassVar[str] = ""
    #: URL schemes this runner accepts, e.g. ("docker",)
    schemes: ClassVar[tuple] = ()

    @abc.abstractmethod
    def is_available(self) -> bool:
        """Whether the engine is installed and answering."""

    @abc.abstractmethod
    def run(self, image: str, job_dir: Path, timeout: Optional[float] = None,
            env: Optional[Dict[str, str]] = None) -> int:
        """Run the job in ``job_dir`` inside ``image``; return the container's exit code."""

    def kill(self, job_dir: Path) -> None:
        """Stop the container running ``job_dir``, if any (for cancel and timeouts)."""


def describe_interface(cls: Any) -> str:
    """The first line of an interface's docstring (used in registry error messages)."""
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.__name__
