"""What every container runner shares: image URLs, the job's mounts and command, the
calling user, the hither-core source mount, and the error for a container that died."""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Dict, List, Optional, Tuple

from hither.errors import WorkerDiedError

from hither.errors import ContainerError
from hither.models import ContainerOptions

logger = logging.getLogger("hither_container")

#: where the hither-core package is mounted (read-only) inside a container
HITHER_MOUNT = "/opt/hither-core"
#: labels on every container hither starts (swept when their owner process is gone)
LABEL_JOB = "hither.job"
LABEL_OWNER_PID = "hither.owner_pid"
LABEL_OWNER_HOST = "hither.owner_host"
LABEL_KIND = "hither.kind"  # "job" (one run) or "warm" (reused)


class ContainerCrashedError(ContainerError, WorkerDiedError):
    """The job's container ended without writing the job's outcome: a non-zero exit, a
    signal (``exit_code`` > 128), or an out-of-memory kill (``oom_killed``). ``logs`` holds
    the tail of the container's output."""

    def __init__(self, message: str, exit_code: Optional[int] = None, oom_killed: bool = False,
                 logs: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.logs = logs


def split_image(url: str) -> Tuple[str, str]:
    """``docker://python:3.11`` -> ("docker", "python:3.11"); a bare reference is docker's;
    a path ending in ``.sif`` is ("sif", path)."""
    if "://" in url:
        scheme, ref = url.split("://", 1)
        return scheme.lower(), ref
    if url.endswith(".sif"):
        return "sif", url
    return "docker", url


def calling_user() -> str:
    """``uid:gid`` of this process: files a job writes are the caller's."""
    return f"{os.getuid()}:{os.getgid()}"


_prepared: Dict[str, str] = {}
_prepared_lock = threading.Lock()


def hither_source() -> str:
    """The ``hither`` package to mount read-only: a byte-compiled copy of the installed one
    (so a container's Python need not compile it at every start), kept under
    ``~/.cache/hither/container`` by content; the installed package itself if no copy can
    be made."""
    import hither

    src = os.path.dirname(os.path.abspath(hither.__file__))
    with _prepared_lock:
        if src not in _prepared:
            try:
                _prepared[src] = _compiled_copy(src)
            except OSError as exc:
                logger.info("mounting %s itself (no compiled copy: %s)", src, exc)
                _prepared[src] = src
        return _prepared[src]


def _compiled_copy(src: str) -> str:
    import compileall
    import hashlib
    import shutil
    import tempfile

    h = hashlib.sha1()
    files = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for n in sorted(names):
            if n.endswith(".py"):
                path = os.path.join(root, n)
                files.append(os.path.relpath(path, src))
                h.update(files[-1].encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(f.read())
    base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                        "hither", "container")
    dest = os.path.join(base, f"hither-{h.hexdigest()[:16]}", "hither")
    if os.path.isdir(dest):
        return dest
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".hither-", dir=base)
    try:
        for rel in files:
            os.makedirs(os.path.join(tmp, "hither", os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(src, rel), os.path.join(tmp, "hither", rel))
        # pycs for this Python; an image with another Python version ignores them
        compileall.compile_dir(os.path.join(tmp, "hither"), quiet=2)
        for root, dirs, names in os.walk(tmp):  # readable by any uid a container runs as
            for n in dirs + names:
                os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, os.path.dirname(dest))
        except OSError:  # another process made it meanwhile
            if not os.path.isdir(dest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def mounts_hither(options: ContainerOptions) -> bool:
    """Whether the real hither-core is mounted into the container (``extra["mount_hither"]``,
    default True); without it the runner's stdlib stand-in serves ``import hither``."""
    return bool(options.extra.get("mount_hither", True))


def parse_bind(spec: str) -> Tuple[str, str, str]:
    """``host:container[:ro|rw]`` -> (absolute host path, container path, mode)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
            (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ContainerError(f"bind mount {spec!r} is not 'host:container[:ro|rw]'")
    host, inside = os.path.abspath(parts[0]), parts[1]
    if not os.path.isabs(inside):
        raise ContainerError(f"bind mount {spec!r}: the container path must be absolute")
    if not os.path.exists(host):
        raise ContainerError(f"bind mount {spec!r}: {host} does not exist on this host")
    return host, inside, parts[2] if len(parts) == 3 else "rw"


def job_binds(job_dir: str, options: ContainerOptions) -> List[Tuple[str, str, str]]:
    """(host, container, mode) of a job: its folder read-write at the same path (so paths in
    results mean the same inside and out), hither-core read-only, then the user's binds."""
    return [(job_dir, job_dir, "rw")] + shared_binds(options)


def shared_binds(options: ContainerOptions) -> List[Tuple[str, str, str]]:
    """The binds every container of ``options`` gets: hither-core read-only (unless
    ``mount_hither`` is off), then the user's."""
    binds = []
    if mounts_hither(options):
        binds.append((hither_source(), f"{HITHER_MOUNT}/hither", "ro"))
    binds += [parse_bind(b) for b in options.binds]
    return binds


def job_env(options: ContainerOptions) -> Dict[str, str]:
    """The container's environment: hither-core importable (when mounted), no bytecode
    written into read-only mounts, then the user's variables."""
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    if mounts_hither(options):
        env["PYTHONPATH"] = HITHER_MOUNT
    env.update(options.env)
    return env


def job_command(job_dir: str) -> List[str]:
    """The command that runs a job directory inside an image."""
    return ["python3", os.path.join(job_dir, "runner.py"), job_dir]


def describe_exit(code: Optional[int]) -> str:
    """``exit code 137 (SIGKILL)``."""
    if code is None:
        return "no exit code"
    if code > 128:
        try:
            return f"exit code {code} ({signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit code {code}"


def has_outcome(job_dir: str) -> bool:
    """Whether the runner wrote the job's outcome (a result or an error)."""
    return any(os.path.exists(os.path.join(job_dir, n)) for n in ("result.json", "error.json"))


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def crashed(image: str, job_dir: str, code: Optional[int], oom: bool, memory: Optional[str],
            logs: str) -> ContainerCrashedError:
    """The error for a container that ended without the job's outcome."""
    if oom:
        what = (f"was killed by the out-of-memory killer (memory limit {memory or 'none set'}); "
                "raise ContainerOptions(memory=...) or use less memory")
    else:
        what = f"ended with {describe_exit(code)} without writing the job's outcome"
    msg = f"the container of job {os.path.basename(job_dir)} ({image}) {what}"
    if logs.strip():
        msg += "; its last output:\n" + tail(logs)
    return ContainerCrashedError(msg, exit_code=code, oom_killed=oom, logs=logs)
