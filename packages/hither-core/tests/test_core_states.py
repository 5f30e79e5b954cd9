"""The job state machine (``hither.jobs.states``) as pure transitions: no process, no thread."""
from __future__ import annotations

from typing import Any, Iterable, Tuple

import pytest

from hither.jobs import states as S
from hither.status import JobStatus

A = S.Action
ERR = RuntimeError("boom")
CANCEL = RuntimeError("cancelled")


def run(events: Iterable[Any], state: S.JobState = S.JobState()) -> Tuple[S.JobState, list]:
    """Feed ``events`` in order; the final record and every action, in order."""
    actions: list = []
    for e in events:
        state, acts = S.transition(state, e)
        actions.extend(acts)
    return state, actions


def test_plain_job_queued_running_finished_without_cache() -> None:
    st, acts = S.transition(S.JobState(), S.Submitted(0, False, False))
    assert (st.step, st.status, acts) == (S.Step.HANDLER, JobStatus.QUEUED, (A.SUBMIT,))
    st, acts = S.transition(st, S.Started({"pid": 1}))
    assert (st.status, acts) == (JobStatus.RUNNING, (A.MERGE_INFO,))
    st, acts = S.transition(st, S.Finished(42, {"pid": 1}))
    assert st.done and (st.status, st.value, st.error) == (JobStatus.FINISHED, 42, None)
    assert acts == (A.MERGE_INFO, A.NOTIFY)  # no input jobs to let go of


def test_runtime_info_merged_only_when_given_inputs_released_only_when_there() -> None:
    st, acts = run([S.Submitted(0, False, False), S.Started(), S.Finished(1)])
    assert acts == [A.SUBMIT, A.NOTIFY] and st.done and not st.inputs
    st, acts = run([S.Submitted(1, False, False), S.InputsReady(), S.Started(), S.Finished(1, {})])
    assert acts == [A.WATCH_INPUTS, A.RESOLVE_INPUTS, A.SUBMIT, A.MERGE_INFO, A.NOTIFY,
                    A.RELEASE_INPUTS]
    assert st.done and st.inputs


def test_with_cache_the_write_is_an_action_before_waiters_wake() -> None:
    st, acts = run([S.Submitted(0, True, True)])
    assert (st.step, st.status, acts) == (S.Step.CACHE, JobStatus.PENDING, [A.ASK_CACHE])
    st, acts = run([S.CacheMiss(), S.Started({"pid": 1}), S.Finished(7, {})], st)
    assert acts == [A.SUBMIT, A.MERGE_INFO, A.MERGE_INFO, A.WRITE_CACHE]
    # decided, not yet shown: the status stays running and nobody is woken until Stored
    assert (st.step, st.status, st.end_status, st.value) == (S.Step.STORING, JobStatus.RUNNING,
                                                            JobStatus.FINISHED, 7)
    assert not st.done and st.ending
    st, acts = S.transition(st, S.Stored())
    assert st.done and st.status is JobStatus.FINISHED and acts == (A.NOTIFY,)


def test_force_run_skips_the_lookup_but_still_writes() -> None:
    st, acts = run([S.Submitted(0, ask_cache=False, write_cache=True), S.Started(), S.Finished(9)])
    assert acts == [A.SUBMIT, A.WRITE_CACHE]
    assert st.step is S.Step.STORING and not st.ask_cache


def test_failures_are_written_too_cancels_never() -> None:
    queued = run([S.Submitted(0, True, True), S.CacheMiss()])[0]
    assert S.transition(queued, S.Failed(ERR, {"pid": 1}))[1] == (A.MERGE_INFO, A.WRITE_CACHE)
    assert S.transition(queued, S.Failed(ERR))[1] == (A.WRITE_CACHE,)
    st, acts = S.transition(queued, S.Cancelled(CANCEL))
    assert st.done and st.status is JobStatus.CANCELLED and A.WRITE_CACHE not in acts


def test_cache_hit_ends_the_job_without_writing_back() -> None:
    st, acts = run([S.Submitted(0, True, True), S.CacheHit(JobStatus.FINISHED, 5, None, {"cached": True})])
    assert st.done and st.from_cache and st.value == 5
    assert acts == [A.ASK_CACHE, A.MERGE_INFO, A.NOTIFY]
    st, _ = run([S.Submitted(0, True, True), S.CacheHit(JobStatus.ERROR, None, ERR, {})])
    assert st.status is JobStatus.ERROR and st.error is ERR


def test_inputs_then_resolution_then_cache() -> None:
    st, acts = run([S.Submitted(2, True, True)])
    assert (st.step, st.status, acts) == (S.Step.INPUTS, JobStatus.PENDING, [A.WATCH_INPUTS])
    st, acts = S.transition(st, S.InputsReady())
    assert st.step is S.Step.CACHE and acts == (A.RESOLVE_INPUTS, A.ASK_CACHE)


def test_input_failed_ends_with_its_error() -> None:
    st, acts = run([S.Submitted(1, False, False), S.InputFailed(ERR)])
    assert st.status is JobStatus.ERROR and st.error is ERR
    assert acts == [A.WATCH_INPUTS, A.NOTIFY, A.RELEASE_INPUTS]


@pytest.mark.parametrize("before", [
    [S.Submitted(1, False, False)],                  # waiting for inputs
    [S.Submitted(0, True, True)],                   # asking the cache
])
def test_cancel_before_the_handler_ends_at_once(before: list) -> None:
    st, acts = run(before + [S.CancelRequested(CANCEL)])
    assert st.status is JobStatus.CANCELLED and st.error is CANCEL
    assert acts[-1] == (A.RELEASE_INPUTS if st.inputs else A.NOTIFY)
    # the cache's late answer, or the inputs ending, changes nothing
    for late in (S.CacheMiss(), S.CacheHit(JobStatus.FINISHED, 1, None, {}), S.InputsReady()):
        assert S.transition(st, late) == (st, ())


def test_cancel_with_the_handler_asks_it_and_ends_a_still_queued_job() -> None:
    queued = run([S.Submitted(0, False, False)])[0]
    st, acts = S.transition(queued, S.CancelRequested(CANCEL))
    assert st is queued and acts == (A.CANCEL_IN_HANDLER,)
    st, acts = S.transition(st, S.HandlerKept(CANCEL))
    assert st.status is JobStatus.CANCELLED and acts == (A.NOTIFY,)
    running = run([S.Started()], queued)[0]
    assert S.transition(running, S.HandlerKept(CANCEL)) == (running, ())  # it goes on


def test_a_result_after_a_cancel_is_ignored() -> None:
    st = run([S.Submitted(0, True, True), S.CacheMiss(), S.Started(), S.Cancelled(CANCEL)])[0]
    for late in (S.Finished(1), S.Failed(ERR), S.Started(), S.Cancelled(CANCEL), S.Stored(),
                 S.CancelRequested(CANCEL)):
        assert S.transition(st, late) == (st, ())
    assert st.status is JobStatus.CANCELLED and st.value is None


def test_the_first_end_wins() -> None:
    running = run([S.Submitted(0, False, False), S.Started()])[0]
    st, _ = run([S.Finished(1), S.Finished(2), S.Failed(ERR)], running)
    assert (st.status, st.value, st.error) == (JobStatus.FINISHED, 1, None)
    st, acts = run([S.Failed(ERR), S.Finished(2)], running)
    assert (st.status, st.error) == (JobStatus.ERROR, ERR) and acts.count(A.NOTIFY) == 1


def test_while_storing_a_second_end_or_a_cancel_changes_nothing() -> None:
    storing = run([S.Submitted(0, True, True), S.CacheMiss(), S.Finished(3)])[0]
    assert storing.step is S.Step.STORING
    for late in (S.Finished(4), S.Failed(ERR), S.Cancelled(CANCEL), S.CancelRequested(CANCEL),
                 S.Started()):
        assert S.transition(storing, late) == (storing, ())


def test_events_out_of_place_are_ignored() -> None:
    new = S.JobState()
    assert S.transition(new, S.Finished(1)) == (new, ())      # never sent out
    assert S.transition(new, S.Started()) == (new, ())
    assert S.transition(new, S.Stored()) == (new, ())
    waiting = run([S.Submitted(1, False, False)])[0]
    assert S.transition(waiting, S.Finished(1)) == (waiting, ())
    assert S.transition(waiting, S.Submitted(0, False, False)) == (waiting, ())  # submitted twice
    queued = run([S.Submitted(0, False, False)])[0]
    assert S.transition(queued, S.CacheMiss()) == (queued, ())
    assert S.transition(queued, S.InputsReady()) == (queued, ())


def test_a_failure_before_the_handler_still_ends_the_job() -> None:
    """The cache lookup or the handler's submit raising ends the job with that error."""
    st, acts = run([S.Submitted(0, True, True), S.Failed(ERR)])
    assert st.step is S.Step.STORING and acts[-1] is A.WRITE_CACHE
    st, _ = run([S.Submitted(0, False, False), S.Failed(ERR)])
    assert st.status is JobStatus.ERROR and st.done


# ------------------------------------------------------------------ the shell (Job + manager)
class _HoldingHandler:
    """Keeps submitted jobs; reports only when told; its cancel stops nothing."""

    name = "holding"

    def __init__(self) -> None:
        self.jobs: list = []

    def submit(self, job: Any, inline: bool) -> None:
        self.jobs.append(job)

    def cancel(self, job: Any) -> bool:
        return False


def test_shell_cancel_of_a_queued_job_then_a_late_result() -> None:
    import hither as hi
    from hither.jobs.manager import manager
    from hither.plugins.interfaces import JobHandler

    from core_funcs import add

    handler = type("Holding", (_HoldingHandler, JobHandler), {})()
    with hi.Config(job_handler=handler):
        job = add.run(x=1, y=2)
    assert handler.jobs == [job] and job.get_status() is JobStatus.QUEUED
    assert job.cancel() is True  # the handler would not stop it: still queued, so it ends here
    assert job.get_status() is JobStatus.CANCELLED and job not in manager.active_jobs()
    job.report_running()
    job.report_result(3)  # late: ignored
    assert job.get_status() is JobStatus.CANCELLED
    with pytest.raises(hi.JobCancelledException):
        job.wait(5)
    assert job.cancel() is False


def test_shell_double_report_first_wins_and_callbacks_run_once() -> None:
    import hither as hi
    from hither.plugins.interfaces import JobHandler

    from core_funcs import add

    handler = type("Holding", (_HoldingHandler, JobHandler), {})()
    with hi.Config(job_handler=handler):
        job = add.run(x=1, y=2)
    seen: list = []
    job.add_done_callback(seen.append)
    job.report_running({"pid": 4242})
    job.report_result(3)
    job.report_error(RuntimeError("late"))
    assert job.wait(5) == 3 and seen == [job]
    assert job.get_runtime_info().pid == 4242


def test_shell_an_input_result_that_cannot_be_read_fails_the_job(monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """Resolving the inputs may fail (a stored result that cannot be read): the job ends
    with that error rather than staying pending, and is not submitted."""
    import hither as hi
    from hither.jobs import manager as M
    from hither.plugins.interfaces import JobHandler

    from core_funcs import add

    def unreadable(value: Any, result_of: Any) -> Any:
        raise OSError("the store is gone")

    handler = type("Holding", (_HoldingHandler, JobHandler), {})()
    with hi.Config(job_handler=handler):
        a = add.run(x=1, y=2)
        b = add.run(x=a, y=1)
    monkeypatch.setattr(M, "substitute", unreadable)
    a.report_result(3)
    with pytest.raises(OSError, match="the store is gone"):
        b.wait(5)
    assert handler.jobs == [a]


# ------------------------------------------------------------------ retries (hi.Retry)
def _retry(**kw: Any) -> Any:
    from hither.retry import Retry

    return Retry(**kw)


def test_an_infrastructure_failure_goes_back_to_the_handler_after_a_delay() -> None:
    from hither.errors import WorkerDiedError

    died = WorkerDiedError("worker died")
    st, acts = run([S.Submitted(0, False, False, _retry(attempts=3, backoff=0.5)), S.Started(),
                    S.Failed(died, {"pid": 1})])
    assert (st.step, st.status, st.attempt, st.delay) == (S.Step.BACKOFF, JobStatus.QUEUED, 2, 0.5)
    assert acts[-2:] == [A.MERGE_INFO, A.RETRY_LATER] and st.error is None and not st.ending
    st, acts = run([S.Started(), S.Finished(1), S.Failed(died)], st)  # late reports: ignored
    assert st.step is S.Step.BACKOFF and acts == []
    st, acts = run([S.RetryDue()], st)
    assert (st.step, st.status, st.attempt, acts) == (S.Step.HANDLER, JobStatus.QUEUED, 2, [A.SUBMIT])
    st, acts = run([S.Started(), S.Failed(died)], st)
    assert (st.step, st.attempt, st.delay) == (S.Step.BACKOFF, 3, 1.0)  # doubled
    st, acts = run([S.RetryDue(), S.Started(), S.Failed(died)], st)
    assert st.done and st.status is JobStatus.ERROR and st.error is died and st.attempt == 3
    assert acts == [A.SUBMIT, A.NOTIFY]


def test_the_jobs_own_error_and_a_timeout_are_not_retried_unless_asked() -> None:
    from hither.errors import JobError, JobTimeoutError

    for err in (ValueError("bad"), JobTimeoutError("too long")):
        st, _ = run([S.Submitted(0, False, False, _retry()), S.Failed(err)])
        assert st.done and st.error is err
    st, acts = run([S.Submitted(0, False, False, _retry(retry_on=(ValueError,))), S.Failed(ValueError())])
    assert st.step is S.Step.BACKOFF and acts[-1] is A.RETRY_LATER
    # the job's error that could not be rebuilt here is matched by its type's name
    remote = JobError("bad", remote_type="ValueError")
    st, _ = run([S.Submitted(0, False, False, _retry(retry_on=(ValueError,))), S.Failed(remote)])
    assert st.step is S.Step.BACKOFF
    st, _ = run([S.Submitted(0, False, False, None), S.Failed(RuntimeError())])  # no policy
    assert st.done


def test_a_failure_for_a_retryable_cause_is_not_written_to_the_cache() -> None:
    from hither.errors import WorkerDiedError

    st, acts = run([S.Submitted(0, True, True, _retry(attempts=1, retry_on=(ValueError,))),
                    S.CacheMiss(), S.Failed(ValueError("flaky"))])
    assert st.done and A.WRITE_CACHE not in acts
    st, acts = run([S.Submitted(0, False, True, _retry(attempts=2)), S.Failed(WorkerDiedError()),
                    S.RetryDue(), S.Failed(WorkerDiedError())])
    assert st.done and A.WRITE_CACHE not in acts
    st, acts = run([S.Submitted(0, False, True, _retry()), S.Failed(KeyError("x"))])  # its own
    assert acts[-1] is A.WRITE_CACHE and st.step is S.Step.STORING


def test_cancel_during_the_backoff_ends_the_job_and_the_timer_changes_nothing() -> None:
    from hither.errors import WorkerDiedError

    st, _ = run([S.Submitted(0, False, False, _retry()), S.Failed(WorkerDiedError())])
    st, acts = run([S.CancelRequested(CANCEL)], st)
    assert st.done and st.status is JobStatus.CANCELLED and acts == [A.NOTIFY]
    st2, acts = run([S.RetryDue()], st)
    assert st2 is st and acts == []


def test_only_a_failure_with_the_handler_is_retried() -> None:
    from hither.errors import WorkerDiedError

    # the cache lookup failed, or an input job: no handler ran it, nothing to retry
    st, _ = run([S.Submitted(0, True, True, _retry()), S.Failed(WorkerDiedError())])
    assert st.done
    st, _ = run([S.Submitted(1, False, False, _retry()), S.InputFailed(WorkerDiedError())])
    assert st.done


@pytest.mark.parametrize("kw", [dict(attempts=0), dict(attempts=2.5), dict(attempts=True),
                                dict(backoff=float("nan")), dict(backoff=-1), dict(backoff=float("inf")),
                                dict(max_backoff=float("inf")), dict(backoff="1"),
                                dict(retry_on=ValueError("x")), dict(retry_on=(int,))])
def test_a_bad_retry_policy_is_refused_naming_the_option(kw: Any) -> None:
    from hither.errors import ConfigError

    with pytest.raises(ConfigError, match=f"hi.Retry\\({next(iter(kw))}=") as info:
        _retry(**kw)
    assert "must" in str(info.value) or "takes" in str(info.value)


def test_backoff_doubles_up_to_its_ceiling() -> None:
    from hither.errors import WorkerDiedError

    r = _retry(attempts=10, backoff=1.0, max_backoff=5.0)
    assert [r.delay_after(n, WorkerDiedError()) for n in range(1, 11)] == [1, 2, 4, 5, 5, 5, 5, 5, 5, None]
