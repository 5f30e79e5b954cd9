"""Checks of the numeric options of the cache backends and the CLI: finite, in range, and
errors that say what to give instead (``nan``, ``inf`` or 1e30 seconds would otherwise mean a
wait that never ends, or an overflow deep inside a library)."""
from __future__ import annotations

import math
from numbers import Real

from hither.errors import ConfigError

#: the longest wait (seconds) a timeout or cooldown option accepts: one day
MAX_SECONDS = 86400.0


def seconds_option(name: str, value: object, maximum: float = MAX_SECONDS) -> float:
    """``value`` as a float number of seconds between 0 and ``maximum``, else ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0 <= v <= maximum:
        raise ConfigError(f"{name}={value!r} is out of range: give a number of seconds from 0 to "
                          f"{maximum:g}")
    return v
