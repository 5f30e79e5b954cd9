"""Keeping the resource's secret from the jobs it runs: which environment variables hold it,
and wiping them from a ``serve`` process's own environment.

A job runs in a job server started without those variables (``hidden_env`` of
``hither.outside.jobserver.JobServerLauncher``); ``hither-remote serve`` also removes them
from its own environment once the secret is loaded (so no other launcher passes them on)
and overwrites them in its initial environment block, which ``/proc/<pid>/environ`` shows::

    names = secret_env_names(secret)      # ["HITHER_REMOTE_SECRET", ...]
    forget_env(names)                     # serve only: this process is the resource's own
    undumpable()                          # serve only: no other process of its user reads its memory

What this cannot hide: a file. A job runs as the user ``serve`` runs as and can read any
file that user can, the secret file included (and the config file that names it); a job in
a container sees only its job directory (``hither_remote.resource_containers``). See
docs/reliability.md's remote threat model.
"""
from __future__ import annotations

import ctypes
import logging
import os
from typing import List, Sequence

from .signing import ENV_SECRET, ENV_SECRET_FILE, Secret

logger = logging.getLogger("hither_remote.hiding")


def secret_env_names(secret: Secret) -> List[str]:
    """The environment variables a job must not see: the secret's and its file's, and any
    other whose value holds the secret."""
    key = secret.key()
    names = [ENV_SECRET, ENV_SECRET_FILE]
    names += [n for n, v in os.environ.items() if n not in names and key in os.fsencode(v)]
    return names


def _wipe_initial_block(names: Sequence[str]) -> None:
    """Overwrite the values of ``names`` in place in the C ``environ`` strings (the memory
    ``/proc/<pid>/environ`` reads); a platform without it is only logged."""
    prefixes = [os.fsencode(n) + b"=" for n in names]
    try:
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    except (OSError, ValueError, AttributeError) as exc:
        logger.debug("cannot reach the C environment here (%s)", exc)
        return
    i = 0
    while environ[i]:
        addr = environ[i]
        entry = ctypes.string_at(addr)
        for prefix in prefixes:
            if entry.startswith(prefix):
                ctypes.memset(addr + len(prefix), 0, len(entry) - len(prefix))
        i += 1


def forget_env(names: Sequence[str]) -> None:
    """Remove ``names`` from this process's environment, its initial block included (for
    a process that serves jobs and nothing else: ``hither-remote serve``)."""
    _wipe_initial_block(names)
    for n in names:
        os.environ.pop(n, None)


def undumpable() -> bool:
    """Mark this process not dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``): a process of
    the same user that is not root (a job) can then no longer read its memory
    (``/proc/<pid>/mem``, a debugger) nor its ``/proc/<pid>/environ`` or ``root``, and it
    leaves no core file holding the secret. Processes it starts are dumpable again (the flag
    is reset at exec). False where this is not available (then only logged)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
    except (OSError, AttributeError) as exc:
        logger.debug("cannot make this process undumpable here (%s)", exc)
        return False
    if not ok:
        logger.debug("prctl(PR_SET_DUMPABLE, 0) failed (errno %d)", ctypes.get_errno())
    return ok
