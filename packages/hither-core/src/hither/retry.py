"""``hi.Retry``: the retry policy of jobs (how often, how long between attempts, for which errors).

Pure data and pure decisions: the job state machine (``hither.jobs.states``) asks
:meth:`Retry.delay_after` when a job fails; the job manager waits that long (a timer, no
thread per job) and hands the job to its handler again.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Type

from hither.errors import ConfigError, JobError, is_infrastructure_failure

#: retries of an infrastructure failure when nothing is configured (3 attempts in all)
DEFAULT_ATTEMPTS = 3


def _seconds(name: str, value: Any, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or math.isinf(value) or value < 0 or (not allow_zero and value == 0):
        need = "a finite number of seconds >= 0" if allow_zero else "a finite number of seconds > 0"
        raise ConfigError(f"hi.Retry({name}=...) must be {need}, not {value!r}")
    return float(value)


class Retry:
    """How a failed job is tried again::

        hi.Config(retry=hi.Retry(attempts=5, backoff=2.0, retry_on=(ConnectionError,)))
        @hi.function('fetch', '0.1.0', retry=hi.Retry(attempts=4, retry_on=(IOError,)))

    ``attempts``: runs in all, the first included (1: never retry). ``backoff``: seconds
    before the first retry, doubled before each next one, up to ``max_backoff``.
    Failures that are not the job's fault (``hither.errors.is_infrastructure_failure``: a
    dead worker or pilot, a lost allocation or lease, the container engine or job bus gone)
    are always retried; the job's own exceptions only when they are instances of a type in
    ``retry_on`` (a timeout too: ``retry_on=(hi.JobTimeoutError,)``). A job that fails for
    a retryable cause after its last attempt is not recorded in the job cache as a failure.
    """

    __slots__ = ("attempts", "backoff", "max_backoff", "retry_on")

    def __init__(self, attempts: int = DEFAULT_ATTEMPTS, backoff: float = 1.0, max_backoff: float = 60.0,
                 retry_on: Tuple[Type[BaseException], ...] = ()) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError(f"hi.Retry(attempts=...) must be a whole number >= 1 (runs in all, "
                              f"1: no retry), not {attempts!r}")
        self.attempts = attempts
        self.backoff = _seconds("backoff", backoff)
        self.max_backoff = _seconds("max_backoff", max_backoff)
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
        if not isinstance(retry_on, (tuple, list)) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise ConfigError("hi.Retry(retry_on=...) takes a tuple of exception types such as "
                              f"(ValueError, OSError), not {retry_on!r}")
        self.retry_on: Tuple[Type[BaseException], ...] = tuple(retry_on)

    def retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is a cause this policy retries (attempts left or not)."""
        if is_infrastructure_failure(error):
            return True
        if not self.retry_on:
            return False
        if isinstance(error, self.retry_on):
            return True
        # the job's own error that could not be rebuilt here: match its type by name
        remote = getattr(error, "remote_type", "") if isinstance(error, JobError) else ""
        return bool(remote) and any(remote in (t.__name__, f"{t.__module__}.{t.__qualname__}")
                                    for t in self.retry_on)

    def delay_after(self, attempt: int, error: BaseException) -> Optional[float]:
        """Seconds to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed
        with ``error``; None when the job is not retried (not retryable, or no attempt left)."""
        if attempt >= self.attempts or not self.retryable(error):
            return None
        return min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retry) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, k) for k in self.__slots__))

    def __repr__(self) -> str:
        on = ", ".join(t.__name__ for t in self.retry_on)
        return (f"hi.Retry(attempts={self.attempts}, backoff={self.backoff:g}, "
                f"max_backoff={self.max_backoff:g}, retry_on=({on}{',' if len(self.retry_on) == 1 else ''}))")


#: the policy of a job when neither hi.Config nor its function gives one
DEFAULT = Retry()
#: no retry at all (``hi.Config(retry=False)``)
NEVER = Retry(attempts=1)


def as_policy(value: Any, where: str) -> Retry:
    """``value`` given as ``retry=`` (a ``hi.Retry``, an int of attempts, True/False) as a
    ``Retry``; ``where`` names the option in the error."""
    if isinstance(value, Retry):
        return value
    if value is True:
        return DEFAULT
    if value is False:
        return NEVER
    if isinstance(value, int):
        try:
            return Retry(attempts=value)
        except ConfigError:
            pass
    raise ConfigError(f"{where}(retry=...) takes hi.Retry(attempts=..., backoff=..., retry_on=(...)), "
                      f"a number of attempts >= 1, True (the default policy) or False (no retry), "
                      f"not {value!r}")
