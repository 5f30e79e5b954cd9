"""How a job ended, as every transport reports it: check the result, rebuild the error,
report to the Job (``hither.values.outcome``).

The three ways a job runs — in this process, in a local worker process, from a job
directory (containers, pilots, other machines) — each produce an ``Outcome`` and hand it
to ``report``; the checks and the error rebuilding live only here.
"""
from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, Dict, NamedTuple, Optional

from hither.status import JobStatus
from hither.values.grammar import scan

if TYPE_CHECKING:  # pragma: no cover
    from hither.plugins.protocols import Job


class Outcome(NamedTuple):
    """The end of one run of a job (unpacks as ``status, value, error, runtime_info``)."""

    status: JobStatus
    value: Any
    error: Optional[BaseException]
    runtime_info: Dict[str, Any]


def finished(value: Any, runtime_info: Dict[str, Any], fn_name: str = "the job") -> Outcome:
    """The outcome of a run that returned ``value``, after checking it is a hither value."""
    bad = result_error(value, fn_name)
    if bad is not None:
        return failed(bad, runtime_info)
    runtime_info["status"] = JobStatus.FINISHED
    return Outcome(JobStatus.FINISHED, value, None, runtime_info)


def failed(error: BaseException, runtime_info: Optional[Dict[str, Any]] = None) -> Outcome:
    ri = runtime_info if runtime_info is not None else {}
    ri["status"] = JobStatus.ERROR
    return Outcome(JobStatus.ERROR, None, error, ri)


def result_error(value: Any, fn_name: str = "the job") -> Optional[BaseException]:
    """None when ``value`` may be returned by a job, else the error naming the bad part.
    Whatever goes wrong while checking (not only a wrong type) is the job's error."""
    try:
        scan(value, "the result", allow_jobs=False)
    except (TypeError, FileNotFoundError) as exc:
        return exc
    except RecursionError as exc:
        return TypeError(f"the result of {fn_name} is nested too deeply or contains itself "
                         "(a cycle), so hither cannot check or send it; return a flatter "
                         f"value without cycles (RecursionError: {exc})")
    except Exception as exc:  # noqa: BLE001 - e.g. a returned File that cannot be read
        return TypeError(f"the result of {fn_name} could not be checked: {type(exc).__name__}: {exc}")
    return None


def rebuild_error(info: Dict[str, Any], pickled: Optional[bytes] = None, where: str = "") -> BaseException:
    """The job's exception from its description (``hither.runtime.error_dict``): the pickled
    original when it unpickles here, else rebuilt by type name (or a ``JobError``); the
    traceback text from where the job ran is attached either way."""
    from hither.values.error_info import attach_traceback, from_error_info  # pydantic: only when needed
    from hither.models import ErrorInfo

    desc = ErrorInfo(**{k: v for k, v in info.items() if k in ErrorInfo.model_fields})
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
        except Exception:  # noqa: BLE001 - a class that is not importable here
            exc = None
        if isinstance(exc, BaseException):
            return attach_traceback(exc, desc.traceback, where)
    return from_error_info(desc, where)


def report(job: "Job", outcome: Outcome) -> None:
    """Tell ``job`` how it ended (the first report of a job wins)."""
    if outcome.error is None and outcome.status == JobStatus.FINISHED:
        job.report_result(outcome.value, outcome.runtime_info)
    else:
        job.report_error(outcome.error or RuntimeError("the job failed without an error"),
                         outcome.runtime_info)
