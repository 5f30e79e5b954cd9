"""Errors raised by hither. Each says what was wrong and what to do about it."""
from __future__ import annotations


class HitherError(Exception):
    """Base class of every error hither raises on its own account.

    ``infrastructure`` is True on a failure that is not the job's fault (the machinery
    running it failed: a worker or pilot died, an allocation or lease was lost, the
    container engine or the job bus went away). Such a job is retried by default
    (``hi.Retry``); ask :func:`is_infrastructure_failure`, not the attribute.
    """

    infrastructure: bool = False


class InfrastructureError(HitherError):
    """The machinery running a job failed, not the job (a bus outage, a lost lease...): the
    job is retried by default (``hi.Retry``). Handlers raise it, or a subclass of it."""

    infrastructure = True


def is_infrastructure_failure(err: BaseException) -> bool:
    """Whether ``err`` is a failure that is not the job's fault (see
    ``HitherError.infrastructure``): what ``hi.Retry`` retries by default. The one place
    that says so; handlers mark their errors by their class (``WorkerDiedError``,
    ``InfrastructureError``, ``ContainerEngineError``...)."""
    return isinstance(err, HitherError) and err.infrastructure is True


class FunctionDefinitionError(HitherError, ValueError):
    """A ``@hi.function`` decoration is invalid (e.g. the name does not match)."""


class UnknownFunctionError(HitherError, KeyError):
    """``hi.run(name)`` was given a name no ``@hi.function`` registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class ConfigError(HitherError, ValueError):
    """A ``hi.Config``/``hi.JobCache`` option is invalid or cannot be honoured."""


class PluginNotInstalledError(HitherError, ImportError):
    """A feature lives in a hither package that is not installed."""


class PluginError(HitherError):
    """A plugin registry problem, e.g. two plugins registered under one name."""


class JobError(HitherError):
    """A job failed and its original exception type could not be rebuilt here.

    ``remote_type`` names the original type; ``remote_traceback`` holds the traceback text
    from where the job ran.
    """

    def __init__(self, message: str, remote_type: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class JobCancelledException(HitherError):
    """The job was cancelled (``job.cancel()`` or ``hi.reset()``)."""


class JobTimeoutError(HitherError, TimeoutError):
    """The job ran longer than ``hi.Config(job_timeout=...)`` and was killed.

    Distinct from the builtin ``TimeoutError`` raised by ``job.wait(timeout)``, which only
    means the *wait* ended; a ``JobTimeoutError`` means the job itself was stopped.
    """


class WorkerDiedError(HitherError):
    """The process running the job died (killed, segfault, out of memory, os._exit)."""

    infrastructure = True


class DependencyFailedError(HitherError):
    """An input job of this job failed or was cancelled, so this job could not run."""


class JobNotFinishedError(HitherError):
    """``job.get_result()`` was called before the job finished; call ``job.wait()``."""


class BundleTooLargeError(HitherError):
    """The code bundle of a function is larger than the configured limit."""


class CodeLoadError(HitherError):
    """A worker or runner could not load the function's code."""


class ContainerError(HitherError):
    """A container engine could not run a job (daemon down, bad options, killed container)."""


class ContainerImageError(ContainerError):
    """A container image is missing and cannot be pulled or built; the message names it."""


class ContainerEngineError(ContainerError):
    """The container engine could not be reached, or stopped or restarted mid-job (not the
    job's fault: retried by default, see ``hi.Retry``)."""

    infrastructure = True
