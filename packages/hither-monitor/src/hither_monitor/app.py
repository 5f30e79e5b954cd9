"""The web app: the JSON API over the event log (and the bus) and the one static page.

Every endpoint is read-only except ``POST /api/bus/jobs/{id}/cancel``. Queries run in
Starlette's thread pool (SQLite and pymongo block); a bad parameter answers 400 with what
was wrong, a log that cannot be read 503.
"""
from __future__ import annotations

import functools
import logging
import os
import sqlite3
from typing import Any, Callable, Dict, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .__about__ import __version__
from .busview import BusView
from .eventlog import EventLog, JobFilter
from .guard import Guard

logger = logging.getLogger("hither_monitor.app")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_NO_CACHE = {"Cache-Control": "no-store"}


class BadParam(ValueError):
    """A query parameter the API cannot use (the message names it)."""


def _float(request: Request, name: str) -> Optional[float]:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadParam(f"{name} must be a number (POSIX seconds or a count), got {raw!r}") from None


def _int(request: Request, name: str, default: int) -> int:
    value = _float(request, name)
    return default if value is None else int(value)


def _str(request: Request, name: str) -> Optional[str]:
    raw = request.query_params.get(name)
    return raw if raw else None


def _api(fn: Callable[..., Any]) -> Callable[[Request], Any]:
    """An endpoint from a blocking function of (app state, request) returning JSON data."""
    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        try:
            data = await run_in_threadpool(fn, request.app.state.monitor, request)
        except BadParam as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except sqlite3.Error as exc:
            logger.warning("event log query failed: %s", exc)
            return JSONResponse({"error": f"the event log cannot be read now ({exc})"}, status_code=503)
        except Exception as exc:  # noqa: BLE001 - the bus (pymongo) down or the like: one line, no trace
            logger.warning("%s failed: %s: %s", request.url.path, type(exc).__name__, str(exc)[:300])
            # the page gets the kind of failure only: a driver's message may name the server
            return JSONResponse({"error": f"{type(exc).__name__}: this could not be read now "
                                          "(the monitor's log says more)"}, status_code=503)
        if isinstance(data, Response):
            return data
        return JSONResponse(data, headers=_NO_CACHE)
    return endpoint


def _not_found(what: str) -> Response:
    return JSONResponse({"error": f"no such {what}"}, status_code=404)


class Monitor:
    """What the endpoints read: the event log and, optionally, the bus."""

    def __init__(self, log: EventLog, bus: Optional[BusView] = None) -> None:
        self.log = log
        self.bus = bus


def _filter(request: Request) -> JobFilter:
    return JobFilter(status=_str(request, "status"), function=_str(request, "function"),
                     handler=_str(request, "handler"), run_id=_str(request, "run"), batch=_str(request, "batch"),
                     since=_float(request, "since"), until=_float(request, "until"))


@_api
def info(m: Monitor, request: Request) -> Dict[str, Any]:
    return {"version": __version__, "db": m.log.path, "bus": m.bus is not None, "seq": m.log.last_seq()}


@_api
def summary(m: Monitor, request: Request) -> Dict[str, Any]:
    return {"seq": m.log.last_seq(), "counts": m.log.status_counts(), **m.log.facets()}


@_api
def jobs(m: Monitor, request: Request) -> Dict[str, Any]:
    flt = _filter(request)
    before_t, before_id = _float(request, "before_t"), _str(request, "before_id")
    before = (before_t, before_id) if before_t is not None and before_id is not None else None
    page = m.log.jobs(flt, _int(request, "limit", 50), before)
    if request.query_params.get("count") == "1":
        page["total"] = m.log.count(flt)
    return page


@_api
def job(m: Monitor, request: Request) -> Any:
    found = m.log.job(request.path_params["job_id"])
    return found if found is not None else _not_found("job in the event log")


@_api
def changes(m: Monitor, request: Request) -> Dict[str, Any]:
    return m.log.changes(_int(request, "after", 0))


@_api
def runs(m: Monitor, request: Request) -> Dict[str, Any]:
    return {"runs": m.log.runs(_int(request, "limit", 100))}


@_api
def graph(m: Monitor, request: Request) -> Dict[str, Any]:
    return m.log.graph(request.path_params["run_id"], _int(request, "limit", 400))


@_api
def timeline(m: Monitor, request: Request) -> Dict[str, Any]:
    return {"jobs": m.log.timeline(_float(request, "since"), _int(request, "limit", 2000))}


@_api
def counts(m: Monitor, request: Request) -> Dict[str, Any]:
    return m.log.counts_over_time()


@_api
def batches(m: Monitor, request: Request) -> Dict[str, Any]:
    return {"batches": m.log.batches(_int(request, "limit", 200))}


def _bus(m: Monitor) -> BusView:
    if m.bus is None:
        raise BadParam("no bus: start the monitor with --mongo-url URL --database DB")
    return m.bus


@_api
def bus_summary(m: Monitor, request: Request) -> Dict[str, Any]:
    if m.bus is None:
        return {"enabled": False}
    return {"enabled": True, **m.bus.summary(_int(request, "limit", 100), _str(request, "resource"))}


@_api
def bus_job(m: Monitor, request: Request) -> Any:
    found = _bus(m).job(request.path_params["job_id"])
    return found if found is not None else _not_found("job on the bus")


@_api
def bus_find(m: Monitor, request: Request) -> Dict[str, Any]:
    job_hash = _str(request, "hash")
    if not job_hash:
        raise BadParam("hash is required: the job_hash of a job of the event log")
    return {"jobs": _bus(m).find_by_hash(job_hash)}


@_api
def bus_console(m: Monitor, request: Request) -> Dict[str, Any]:
    attempt = _float(request, "attempt")
    return _bus(m).console(request.path_params["job_id"], _int(request, "after", -1),
                           None if attempt is None else int(attempt))


@_api
def bus_cancel(m: Monitor, request: Request) -> Any:
    job_id = request.path_params["job_id"]
    status = _bus(m).cancel(job_id)
    if status is None:
        return _not_found("job on the bus")
    logger.info("cancel of bus job %s asked from the page: now %s", job_id, status)
    return {"job_id": job_id, "status": status}


async def index(request: Request) -> Response:
    return FileResponse(os.path.join(STATIC, "index.html"), headers=_NO_CACHE)


def create_app(log: EventLog, bus: Optional[BusView] = None, token: Optional[str] = None) -> Any:
    """The ASGI app over ``log`` (and ``bus``); ``token`` None: loopback-only mode."""
    routes = [
        Route("/", index),
        Route("/api/info", info), Route("/api/summary", summary), Route("/api/jobs", jobs),
        Route("/api/jobs/{job_id:path}", job), Route("/api/changes", changes), Route("/api/runs", runs),
        Route("/api/runs/{run_id}/graph", graph), Route("/api/timeline", timeline),
        Route("/api/counts", counts), Route("/api/batches", batches), Route("/api/bus", bus_summary),
        Route("/api/bus/find", bus_find), Route("/api/bus/jobs/{job_id}/console", bus_console),
        Route("/api/bus/jobs/{job_id}/cancel", bus_cancel, methods=["POST"]),
        Route("/api/bus/jobs/{job_id}", bus_job),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.monitor = Monitor(log, bus)
    return Guard(app, token)
