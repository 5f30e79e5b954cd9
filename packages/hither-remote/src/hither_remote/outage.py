"""How a serving loop rides out an unreachable job bus: one short log line per retry, waits
that grow (1 s, 2 s, 4 s ... up to 30 s), and probes that a stop does not wait for.

pymongo's errors carry a topology description of ~900 characters; ``describe`` keeps the
part that says what went wrong (``ServerSelectionTimeoutError: 127.0.0.1:1: [Errno 111]
Connection refused``). While the bus is down, the loop only probes it (``Outage.probe``)
instead of letting each of its steps wait out pymongo's server selection timeout::

    outage = Outage(bus, "resource1")
    try:
        step()
    except PyMongoError as exc:
        stop.wait(outage.failed(exc))           # logs one line, returns the wait
    ...
    if outage.down and not outage.probe(stop):  # still down (logged): wait, try again
        stop.wait(outage.wait)
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, List, Optional

logger = logging.getLogger("hither_remote.resource")

#: first wait after a failure, and the longest (seconds)
FIRST_WAIT = 1.0
MAX_WAIT = 30.0
#: characters of an error's text kept in a log line
_MAX_TEXT = 160


def describe(exc: BaseException) -> str:
    """``exc`` in one short line: its type and the first part of its text, without the
    timeouts and topology description pymongo appends."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    for cut in (" (configured timeouts", ", Timeout:", ", Topology Description"):
        text = text.split(cut, 1)[0]
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Outage:
    """Whether the bus of ``bus`` answers, as a serving loop has seen it (see the module docstring)."""

    def __init__(self, bus: Any, name: str) -> None:
        self.bus, self.name = bus, name
        self.down = False
        self.wait = 0.0  # seconds to wait after the last failure
        self._next = FIRST_WAIT  # ... after the next one
        self._since: Optional[float] = None

    def failed(self, exc: BaseException) -> float:
        """Note a failed step (logged in one line); the seconds to wait before the next try."""
        self.wait, self._next = self._next, min(MAX_WAIT, self._next * 2)
        if self._since is None:
            self._since = time.monotonic()
        self.down = True
        logger.warning("job bus of %r unavailable (%s); retrying in %.0f s", self.name, describe(exc), self.wait)
        return self.wait

    def probe(self, stop: threading.Event) -> bool:
        """Ping the bus: True (and the outage over) if it answers, else False (logged; wait
        ``self.wait`` before the next probe), at once if ``stop`` is set meanwhile. The ping
        runs in a thread of its own and may take pymongo's whole server selection timeout
        (a slow link is not taken for an outage), but a stop does not wait for it."""
        import pymongo.errors

        answer: List[Optional[BaseException]] = []

        def ping() -> None:
            try:
                self.bus.ping()
                answer.append(None)
            except pymongo.errors.PyMongoError as exc:
                answer.append(exc)

        threading.Thread(target=ping, daemon=True, name="hither-remote-probe").start()
        while not answer:
            if stop.wait(0.05):
                return False
        if answer[0] is not None:
            self.failed(answer[0])
            return False
        self.recovered()
        return True

    def recovered(self) -> None:
        """The bus answered: back to normal waits."""
        if self._since is not None:
            logger.info("job bus of %r reachable again after %.0f s", self.name, time.monotonic() - self._since)
        self.down, self.wait, self._next, self._since = False, 0.0, FIRST_WAIT, None
