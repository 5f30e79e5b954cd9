"""The plugin interfaces hither-core declares and the other hither packages implement.

Each interface is an ABC with a ``name`` class attribute: the name a plugin is registered
under in its entry-point group (see ``hither.plugins.registry``). A plugin package declares, e.g.::

    [project.entry-points."hither.caches"]
    file = "hither_cache.file_backend:FileCacheBackend"

and hither-core finds it lazily, never importing a plugin package by name.
"""
from __future__ import annotations

import abc
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Iterator, Optional, Tuple

from hither.errors import ContainerError, HitherError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from hither.models import CacheEntry, ContainerOptions
    from hither.plugins.protocols import Job


class JobHandler(abc.ABC):
    """Runs jobs whose inputs are ready. Entry-point group ``hither.job_handlers``.

    The job manager calls :meth:`submit` with a job (``hither.plugins.protocols.Job``: a
    handler uses only what that protocol names) whose arguments are resolved
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
    #: whether jobs leave this machine's file system (a compute resource): arguments and
    #: results then travel through the content store (see ``result_store`` for results
    #: that stay there as references until read, ``hi.Config(download_results=...)``)
    crosses_machine: ClassVar[bool] = False
    #: the content store this handler's jobs leave results in and read inputs from (a
    #: compute resource's store, a Slurm working folder's ``store/``), or None; a result
    #: held there is passed to the next job on a handler with the same store as a
    #: reference (``hither.values.refs``) instead of through this process
    result_store: Optional["Store"] = None
    #: whether this handler can stop a running job at ``hi.Config(job_timeout=...)``
    supports_timeout: ClassVar[bool] = False
    #: whether container jobs are started by container runners installed in *this*
    #: process; a handler that runs jobs elsewhere (Slurm, remote) sets False, and
    #: ``container=True`` is then valid without hither-container installed here
    containers_run_here: ClassVar[bool] = True
    #: whether every job (not only container jobs) runs from a packaged code bundle
    needs_code_bundle: ClassVar[bool] = False

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
        """Raise ``ConfigError`` at ``.run()`` when this handler cannot run ``job`` as
        configured, beyond what the class attributes above already declare (the manager
        checks those for every handler: ``hither.jobs.placement``)."""

    def job_dir_launcher(self) -> Optional["Launcher"]:
        """A ``Launcher`` that runs *prepared job directories* where this handler runs its
        jobs, for a process that receives job directories rather than ``Job`` objects (a
        hither-remote compute resource). None (the default): the caller runs each one in a
        subprocess on this host. The caller ``close()``s the launcher when done::

            launcher = hi.ParallelJobHandler(4).job_dir_launcher()
            code = launcher.launch(job_dir, timeout=60)   # from up to launcher.capacity threads
            launcher.close()
        """
        return None


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


class ContentNotFoundError(HitherError, FileNotFoundError):
    """A store holds no content for a ``sha1://`` URI (what ``Store.get_path``, ``open``
    and ``load_array`` raise then; also a ``FileNotFoundError``)."""


class Store(abc.ABC):
    """Content-addressed storage of files and arrays. Entry-point group ``hither.stores``.

    Content is addressed by ``sha1://<40 hex>/<name>`` URIs (``hither.content.hashing``),
    stored once, readable from any machine that reaches the store. Content the store does
    not hold raises ``ContentNotFoundError``, a malformed URI or name a ``HitherError``.
    hither-store's ``Store`` (entry point ``fsspec``) and hither-core's own
    ``hither.content.folder.ContentFolder`` implement it; ``hither.testing.store_conformance``
    checks an implementation. Example::

        store = registry.load("stores", "fsspec")("memory://hither")
        uri = store.put_bytes(b"hello", name="greeting.txt")
        with store.open(uri) as f:
            assert f.read() == b"hello"
    """

    name: ClassVar[str] = ""
    #: whether the store is a folder on this machine whose own files ``get_path`` hands out
    #: (``hi.File`` then keeps content in it: ``hither.content.folder.file_store()``)
    is_local: bool = False

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
        """A local path holding the content of ``uri`` (downloaded and verified if needed);
        ``ContentNotFoundError`` when the store does not hold it."""

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


class Launcher(abc.ABC):
    """Runs a prepared job directory somewhere: the one step that differs between the ways
    a job leaves the calling process (a subprocess, a container, a pilot, a remote resource).

    ``hither.outside.path`` prepares the job directory (or a document that another machine
    unpacks into one), calls ``launch`` (``hither.outside.path.launch``), and collects the
    outcome the runner wrote there; ``run_outside(job, launcher)`` does all three. Every
    ``ContainerRunner`` is a Launcher (of the image its job directory's ``spec.json``
    names). Example::

        class HostPython(Launcher):
            name = "host-python"

            def launch(self, job_dir, timeout):
                proc = subprocess.run([sys.executable, os.path.join(job_dir, "runner.py"), job_dir],
                                      timeout=timeout)
                return proc.returncode

        run_outside(job, HostPython())

    ``launch`` returns the exit code of the runner (0 when it wrote an outcome), raises
    ``hither.errors.JobTimeoutError`` after stopping the job when ``timeout`` passes, and
    returns promptly after ``kill(job_dir)`` is called from another thread.
    """

    name: ClassVar[str] = ""
    #: how many job directories this launcher runs at once (None: as many as are given)
    capacity: Optional[int] = None
    #: whether ``launch`` runs a container job (``spec.json`` names an image) in its image
    #: itself (a container runner, Slurm pilots that start it on their node); False: the
    #: caller sends container jobs to a container runner instead
    runs_containers: ClassVar[bool] = False
    #: whether ``launch`` runs the job directory's own ``runner.py`` (False: the runtime is
    #: already in the launcher's processes, e.g. the job server's; a job directory made for
    #: it may leave the file out)
    needs_runner_file: ClassVar[bool] = True

    @abc.abstractmethod
    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        """Run ``runner.py`` on ``job_dir`` and wait for it; return its exit code."""

    def kill(self, job_dir: str) -> None:
        """Stop the run of ``job_dir`` (cancel), with every process it started."""

    def close(self) -> None:
        """Release what the launcher holds (a job server, connections); runs still going
        are stopped."""


class ContainerRunner(Launcher):
    """Runs a prepared job directory inside a container image. Group ``hither.container_runners``.

    A runner *is* the ``Launcher`` of container jobs: ``launch(job_dir, timeout)`` runs the
    directory in the image its ``spec.json`` names (``container``), through ``run``. A
    plugin implements ``is_available``, ``run`` and, for cancel and warm containers,
    ``kill`` and ``close``; it does not implement ``launch``.

    A job directory (see ``hither.outside.path``) holds ``spec.json``, ``args.json`` (+ arrays
    and files), ``code.zip`` and ``runner.py``. ``run`` mounts it read-write, runs
    ``python3 <dir>/runner.py <dir>`` in the image (network off unless the options say
    otherwise) and returns the exit code; core then reads the outcome from the directory.
    The job handler decides *where* a job runs; the runner decides *how* it runs in a
    container. Runners are made per configuration: ``Runner(options)`` with the
    ``hi.Config(container_options=...)`` in force. Example::

        runner = registry.load("container_runners", "docker")(ContainerOptions(memory="2g"))
        exit_code = runner.run("docker://hither-test/python-numpy:3.11", job_dir, timeout=60)
        exit_code = runner.launch(job_dir, timeout=60)   # the image spec.json names

    The contract of ``run``:

    - it returns the exit code of the runner process (0 when the runner wrote its outcome,
      even for a job that raised); any other code means the container crashed or was killed;
    - when ``timeout`` seconds pass it stops and removes the container, then raises
      ``hither.errors.JobTimeoutError`` (the runner also stops itself at the job's timeout
      as a backstop, see ``hither.runtime``);
    - it raises ``hither.errors.ContainerImageError`` naming the image when the image is
      missing and cannot be pulled, and ``ContainerError`` for other engine failures;
    - ``kill(job_dir)`` (from another thread) stops the container running ``job_dir``
      within a second; ``run`` then returns or raises promptly.
    """

    name: ClassVar[str] = ""
    runs_containers: ClassVar[bool] = True
    #: image URL schemes this runner can run, e.g. ("docker",); apptainer also runs
    #: "docker" images, so one image may have several runners: the engine is then chosen by
    #: ``hi.Config(container_engine=...)`` or the default preference order
    schemes: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, options: Optional["ContainerOptions"] = None) -> None:
        from hither.models import ContainerOptions

        self.options = options if options is not None else ContainerOptions()

    @classmethod
    @abc.abstractmethod
    def is_available(cls) -> bool:
        """Whether the engine is installed and answering on this machine."""

    @abc.abstractmethod
    def run(self, image: str, job_dir: str, timeout: Optional[float] = None) -> int:
        """Run the job in ``job_dir`` inside ``image``; return the runner's exit code."""

    def launch(self, job_dir: str, timeout: Optional[float]) -> int:
        """``run`` the job directory in the image its ``spec.json`` names."""
        image = job_dir_image(job_dir)
        if not image:
            raise ContainerError(f"{job_dir}/spec.json names no container image for the "
                                 f"{self.name} container runner")
        return self.run(image, job_dir, timeout=timeout)

    def kill(self, job_dir: str) -> None:
        """Stop the container running ``job_dir``, if any (cancel)."""

    def close(self) -> None:
        """Release what the runner keeps between jobs (warm containers)."""


def job_dir_image(job_dir: str) -> Optional[str]:
    """The container image a prepared job directory's ``spec.json`` names (None: a host job)."""
    with open(os.path.join(job_dir, "spec.json")) as f:
        return json.load(f).get("container") or None


def describe_interface(cls: Any) -> str:
    """The first line of an interface's docstring (used in registry error messages)."""
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else cls.__name__
