"""What the command lines of hither's packages share: one syntax for durations
(``parse_duration``), install hints a shell can run as printed (``pip_install``), and the
one-line report of a failure no command turned into a message (``command_failure``: Ctrl-C
exits with ``EXIT_INTERRUPTED``, anything else with a hint instead of a traceback), and the
last-resort guard of a command group that raises that report in the CLI library's own error
type (``guard_command``).

hither-store (``prune --older-than``) and hither-cache (``clear --older-than``) read durations
with ``parse_duration``; plugin packages may import this module (they may not import each
other). It needs nothing beyond the standard library (no click)::

    parse_duration("90s")    # 90.0
    parse_duration("1d12h")  # 129600.0
    parse_duration("30")     # ValueError: a number needs its unit (30s? 30d?)
    pip_install("hither-cache[mongo]")  # "pip install 'hither-cache[mongo]'" (zsh-safe)
    command_failure(KeyboardInterrupt())  # CommandFailure("interrupted ...", 130)
    guard_command(lambda: super().invoke(ctx), passthrough=(click.ClickException, ...),
                  as_error=click_error, log=logger)  # in a click.Group's invoke
"""
from __future__ import annotations

import logging
import re
import shlex
from typing import Callable, Optional, Tuple, Type, TypeVar

T = TypeVar("T")

#: seconds in each unit of a duration
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: the accepted syntax in words, for --help texts and error messages
DURATION_SYNTAX = "numbers with units s, m, h, d, w (90s, 15m, 12h, 7d, 2w, 1d12h)"

_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([smhdw])\s*")
_BARE = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: one or more numbers each with a unit s, m, h, d or w (``90s``, ``15m``, ``12h``, ``7d``, ``2w``, ``1d12h``,
    ``1.5h``); case and spaces between parts do not matter. A bare number is refused: these
    durations choose what a prune or clear deletes, and ``30`` meant days to one tool and
    seconds to others. Anything else (empty, negative, unknown unit, trailing text) raises
    ``ValueError`` whose message names the text and the accepted syntax."""
    t = text.strip().lower() if isinstance(text, str) else ""
    if _BARE.fullmatch(t):
        raise ValueError(f"{text!r} has no unit: write {t}s, {t}m, {t}h, {t}d or {t}w "
                         f"(durations are {DURATION_SYNTAX})")
    pos, total = 0, 0.0
    while t and pos < len(t):
        m = _PART.match(t, pos)
        if m is None:
            break
        total += float(m.group(1)) * DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not t or pos != len(t):
        raise ValueError(f"{text!r} is not a duration: give {DURATION_SYNTAX}")
    return total


def pip_install(requirement: str) -> str:
    """The ``pip install`` command for ``requirement``, quoted where a shell would read it
    otherwise (``hither-cache[mongo]`` is a glob pattern in zsh)."""
    return f"pip install {shlex.quote(requirement)}"


#: exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


class CommandFailure(Exception):
    """A command's failure as its user reads it: one message saying what went wrong and what
    to do, and the exit code. Each command line shows it as its own errors (click's
    ``ClickException`` with ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def command_failure(exc: BaseException, interrupted_note: str = "") -> Optional[CommandFailure]:
    """What a command line reports for ``exc`` that no command turned into a message: Ctrl-C
    (``KeyboardInterrupt``) ends with ``EXIT_INTERRUPTED`` and "run it again to finish" (plus
    ``interrupted_note``); any other ``Exception`` with its type, its text and where the
    traceback is (``-v``). ``None`` for what is not a failure (``SystemExit``, ...)."""
    if isinstance(exc, KeyboardInterrupt):
        note = f"; {interrupted_note}" if interrupted_note else ""
        return CommandFailure("interrupted (Ctrl-C) before the command finished: run it again to "
                              f"finish{note}", EXIT_INTERRUPTED)
    if isinstance(exc, Exception):
        return CommandFailure(f"unexpected {type(exc).__name__}: {exc}; -v shows the "
                              "traceback (please report it with that output)")
    return None


def guard_command(invoke: Callable[[], T], *, passthrough: Tuple[Type[BaseException], ...],
                  as_error: Callable[[CommandFailure], BaseException], log: logging.Logger,
                  explain: Optional[Callable[[Exception], Optional[BaseException]]] = None,
                  interrupted_note: str = "") -> T:
    """``invoke()``, guarded as a command line's last resort. Exceptions of ``passthrough``
    (the CLI library's own: usage errors, exit, abort) propagate as they are. Ctrl-C and any
    other ``Exception`` are logged with their traceback at debug level (``-v`` shows it) and
    replaced by the error ``explain`` gives for a failure the command line knows, else by
    ``as_error`` of their ``command_failure`` (the CLI library's error with that message and
    exit code). What is no failure (``SystemExit``, ...) propagates."""
    try:
        return invoke()
    except passthrough:
        raise
    except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - the last resort: a message
        log.debug("the command failed", exc_info=exc)
        known = explain(exc) if explain is not None and isinstance(exc, Exception) else None
        if known is not None:
            raise known from None
        failure = command_failure(exc, interrupted_note)
        assert failure is not None  # KeyboardInterrupt and Exception are failures
        raise as_error(failure) from None
