"""The one job state machine, as pure transitions: (state record, event) -> (new record, actions).

No I/O, no locks, no threads here. ``hither.jobs.job.Job`` is the thin shell that feeds
events in (under its lock) and performs the returned actions (outside it); the job
manager sends the events of the life cycle. Every way a job moves — input jobs ending,
the cache answering, the handler reporting, a cancel — goes through :func:`transition`,
so the rules (the first end wins, nothing after the end, what is written to the cache)
live only here and are tested without processes (``test_core_states.py``).

Life cycle (``Step``; the public ``JobStatus`` in brackets)::

    NEW -Submitted(inputs>0)-> INPUTS [pending] -InputsReady-> (as Submitted(0))
    NEW -Submitted(0), ask cache-> CACHE [pending] -CacheMiss-> HANDLER [queued]
    NEW -Submitted(0), else-> HANDLER [queued] -Started-> HANDLER [running]
    HANDLER -Finished/Failed, write cache-> STORING -Stored-> DONE [finished/error]
    any step before DONE -Failed-> (as above); -Cancelled-> DONE [cancelled]
    CACHE -CacheHit-> DONE (from the cache: nothing is written back)
    INPUTS -InputFailed-> DONE [error]
    NEW/INPUTS/CACHE -CancelRequested-> DONE [cancelled]
    HANDLER -CancelRequested-> ask the handler; -HandlerKept-> DONE [cancelled] if still queued
    HANDLER -Failed, retry policy says again-> BACKOFF [queued] -RetryDue-> HANDLER [queued]
    BACKOFF -CancelRequested/Cancelled-> DONE [cancelled]

An event that does not apply (a result after a cancel, a second end, a start after the end)
returns the very same record and no action. Runtime info is merged (``MERGE_INFO``) only
when the event carries some; input jobs are let go (``RELEASE_INPUTS``) only by a job that
has them.

Retries: a job's ``hi.Retry`` policy (``hither.retry``, given with ``Submitted``) decides
whether a failure reported while the job is with its handler sends it back there after a
delay (``RETRY_LATER``: the manager's timer answers ``RetryDue``); a job that ends failed for
a cause its policy retries is not written to the cache (it may well succeed next time).
"""
from __future__ import annotations

import enum
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

from hither.status import JobStatus


class Step(enum.Enum):
    """Where a job is in its life cycle (finer than the public ``JobStatus``)."""

    NEW = "new"            # created, not yet submitted to the machine
    INPUTS = "inputs"      # waiting for its input jobs to end
    CACHE = "cache"        # asking the job cache
    HANDLER = "handler"    # with its handler (queued, then running)
    BACKOFF = "backoff"    # failed, to be handed to its handler again after a delay
    STORING = "storing"    # ended; its outcome is being written to the cache
    DONE = "done"          # ended; waiters woken


class JobState(NamedTuple):
    """The state record of one job. ``value``/``error`` are the outcome once ended
    (during STORING they are the outcome being written; ``status`` then still shows the
    status before the end, since waiters are not woken yet)."""

    step: Step = Step.NEW
    status: JobStatus = JobStatus.PENDING
    ask_cache: bool = False    # look the job up before running it (a cache, no force_run)
    write_cache: bool = False  # record its outcome (a cache, even with force_run)
    inputs: bool = False       # it has input jobs (to let go of at the end)
    from_cache: bool = False
    end_status: Optional[JobStatus] = None
    value: Any = None
    error: Optional[BaseException] = None
    retry: Any = None          # its hither.retry.Retry policy (None: never retried)
    attempt: int = 1           # the run it is at (1: the first)
    delay: float = 0.0         # in BACKOFF: seconds until the next attempt

    @property
    def done(self) -> bool:
        return self.step is Step.DONE

    @property
    def ending(self) -> bool:
        """Whether the end is decided (STORING or DONE): later reports are ignored."""
        return self.step is Step.STORING or self.step is Step.DONE


# ------------------------------------------------------------------ events
class Submitted(NamedTuple):
    """The job was created: ``inputs`` input jobs to wait for; whether the cache is asked
    first (not with ``force_run``), whether the outcome is written to it."""

    inputs: int
    ask_cache: bool
    write_cache: bool
    retry: Any = None  # a hither.retry.Retry, or None: never retried


class InputsReady(NamedTuple):
    """Every input job finished."""


class InputFailed(NamedTuple):
    """An input job failed or was cancelled; ``error`` is this job's error."""

    error: BaseException


class CacheHit(NamedTuple):
    """The cache holds an outcome (``status`` FINISHED or ERROR)."""

    status: JobStatus
    value: Any
    error: Optional[BaseException]
    runtime_info: Dict[str, Any]


class CacheMiss(NamedTuple):
    """The cache holds nothing usable: run the job."""


class Started(NamedTuple):
    """The handler started the job (``runtime_info``: where, optional)."""

    runtime_info: Any = None


class Finished(NamedTuple):
    """The handler reports the job's result."""

    value: Any
    runtime_info: Any = None


class Failed(NamedTuple):
    """The job failed (its function raised, it timed out, its handler or the cache lookup
    failed): ``error`` is the job's error."""

    error: BaseException
    runtime_info: Any = None


class Cancelled(NamedTuple):
    """The job was stopped (by its handler, or before it reached one)."""

    error: BaseException


class CancelRequested(NamedTuple):
    """``job.cancel()``; ``error`` is the job's error if this cancels it outright."""

    error: BaseException


class HandlerKept(NamedTuple):
    """The handler's ``cancel`` did not stop the job; ``error`` as in ``CancelRequested``."""

    error: BaseException


class RetryDue(NamedTuple):
    """The delay before the next attempt of a failed job has passed."""


class Stored(NamedTuple):
    """The cache write of an ended job is done (or failed: that is logged, not an outcome)."""


Event = Union[Submitted, InputsReady, InputFailed, CacheHit, CacheMiss, Started, Finished,
              Failed, Cancelled, CancelRequested, HandlerKept, RetryDue, Stored]


# ------------------------------------------------------------------ actions
class Action(enum.Enum):
    """What the shell must do after a transition, in the order given."""

    WATCH_INPUTS = "watch inputs"        # call back when every input job has ended
    RESOLVE_INPUTS = "resolve inputs"    # put the input jobs' results into the arguments
    ASK_CACHE = "ask cache"              # look the job up; answer CacheHit or CacheMiss
    SUBMIT = "submit"                    # hand the job to its handler
    MERGE_INFO = "merge runtime info"    # merge the event's runtime info into the job's
    CANCEL_IN_HANDLER = "cancel in handler"  # handler.cancel(job); HandlerKept if it says False
    WRITE_CACHE = "write cache"          # store the outcome; answer Stored
    NOTIFY = "notify"                    # wake waiters, run done-callbacks (inputs of others)
    RELEASE_INPUTS = "release inputs"    # hold the input jobs weakly from now on
    RETRY_LATER = "retry later"          # record the failed attempt; RetryDue after state.delay


Transition = Tuple[JobState, Tuple[Action, ...]]

_NOTHING: Tuple[Action, ...] = ()
_MERGE = (Action.MERGE_INFO,)


def _at(state: JobState, step: Step, status: JobStatus) -> JobState:
    """``state`` moved to ``step`` showing ``status`` (built whole: ``_replace`` is slow, and
    this runs several times for every job)."""
    return JobState(step, status, state.ask_cache, state.write_cache, state.inputs,
                    state.from_cache, state.end_status, state.value, state.error, state.retry,
                    state.attempt)


def _end(state: JobState, status: JobStatus, value: Any, error: Optional[BaseException],
         info: Any = None, from_cache: bool = False) -> Transition:
    """The job ends with ``status``: through STORING when its outcome goes to the cache.
    ``info``: the event's runtime info, merged first when there is some."""
    pre = _MERGE if info is not None else _NOTHING
    if state.write_cache and not from_cache and status is not JobStatus.CANCELLED and not (
            error is not None and state.retry is not None and state.retry.retryable(error)):
        return (JobState(Step.STORING, state.status, state.ask_cache, True, state.inputs, False,
                         status, value, error, state.retry, state.attempt), pre + (Action.WRITE_CACHE,))
    return (JobState(Step.DONE, status, state.ask_cache, state.write_cache, state.inputs,
                     from_cache, status, value, error, state.retry, state.attempt), pre + _ended(state))


def _failed(state: JobState, error: BaseException, info: Any) -> Transition:
    """A failure: back to the handler after a delay when the job is with it and its retry
    policy says so (the failed attempt's info merged first; the shell records ``error``
    from the event), else the end."""
    if state.step is Step.HANDLER and state.retry is not None:
        delay = state.retry.delay_after(state.attempt, error)
        if delay is not None:
            return (JobState(Step.BACKOFF, JobStatus.QUEUED, state.ask_cache, state.write_cache,
                             state.inputs, False, None, None, None, state.retry, state.attempt + 1,
                             delay), (_MERGE if info is not None else _NOTHING) + (Action.RETRY_LATER,))
    return _end(state, JobStatus.ERROR, None, error, info)


def _ended(state: JobState) -> Tuple[Action, ...]:
    """What follows the end: wake waiters; let go of the input jobs if there are any."""
    return (Action.NOTIFY, Action.RELEASE_INPUTS) if state.inputs else (Action.NOTIFY,)


def _start(state: JobState) -> Transition:
    """Inputs are ready: ask the cache, or go to the handler."""
    if state.ask_cache:
        return _at(state, Step.CACHE, state.status), (Action.ASK_CACHE,)
    return _at(state, Step.HANDLER, JobStatus.QUEUED), (Action.SUBMIT,)


def transition(state: JobState, event: Event) -> Transition:  # noqa: C901 - one table
    """The new state record and the actions to perform, for ``event`` arriving in ``state``.
    An event that does not apply returns ``state`` itself and no action."""
    kind = type(event)
    step = state.step
    if step is Step.DONE:
        return state, _NOTHING
    if step is Step.STORING:
        if kind is Stored:
            return _at(state, Step.DONE, state.end_status or state.status), _ended(state)
        return state, _NOTHING  # the end is decided: a later report or cancel changes nothing
    if kind is Started:
        if step is not Step.HANDLER:
            return state, _NOTHING
        info = event.runtime_info  # type: ignore[union-attr]
        return _at(state, Step.HANDLER, JobStatus.RUNNING), (_MERGE if info is not None else _NOTHING)
    if kind is Finished:
        if step is not Step.HANDLER:  # a result the job was never sent out for
            return state, _NOTHING
        return _end(state, JobStatus.FINISHED, event.value, None,  # type: ignore[union-attr]
                    event.runtime_info)  # type: ignore[union-attr]
    if kind is Failed:
        if step is Step.BACKOFF:  # a late report of the attempt that already failed
            return state, _NOTHING
        return _failed(state, event.error, event.runtime_info)  # type: ignore[union-attr,arg-type]
    if kind is RetryDue:
        if step is not Step.BACKOFF:
            return state, _NOTHING
        return _at(state, Step.HANDLER, JobStatus.QUEUED), (Action.SUBMIT,)
    if kind is Cancelled:
        return _end(state, JobStatus.CANCELLED, None, event.error)  # type: ignore[union-attr]
    if kind is Submitted:
        if step is not Step.NEW:
            return state, _NOTHING
        inputs = event.inputs > 0  # type: ignore[union-attr]
        state = JobState(Step.INPUTS if inputs else Step.NEW, state.status,
                         event.ask_cache, event.write_cache, inputs,  # type: ignore[union-attr]
                         retry=event.retry)  # type: ignore[union-attr]
        if inputs:
            return state, (Action.WATCH_INPUTS,)
        return _start(state)
    if kind is InputsReady or kind is InputFailed:
        if step is not Step.INPUTS:
            return state, _NOTHING
        if kind is InputFailed:
            return _end(state, JobStatus.ERROR, None, event.error)  # type: ignore[union-attr]
        st, actions = _start(state)
        return st, (Action.RESOLVE_INPUTS,) + actions
    if kind is CacheHit or kind is CacheMiss:
        if step is not Step.CACHE:
            return state, _NOTHING
        if kind is CacheMiss:
            return _at(state, Step.HANDLER, JobStatus.QUEUED), (Action.SUBMIT,)
        return _end(state, event.status, event.value, event.error,  # type: ignore[union-attr]
                    event.runtime_info, from_cache=True)  # type: ignore[union-attr]
    if kind is CancelRequested:
        if step is Step.HANDLER:
            return state, (Action.CANCEL_IN_HANDLER,)
        return _end(state, JobStatus.CANCELLED, None, event.error)  # type: ignore[union-attr]
    if kind is HandlerKept:
        if step is Step.HANDLER and state.status is JobStatus.QUEUED:
            return _end(state, JobStatus.CANCELLED, None, event.error)  # type: ignore[union-attr]
        return state, _NOTHING
    return state, _NOTHING  # Stored before any end: nothing to do
