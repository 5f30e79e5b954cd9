"""Warm Docker containers: one long-lived container per (image, job base folder, options)
and concurrent job, fed job directories through a control folder (``warm_loop.py`` runs
inside), so a job costs a fork instead of a ``docker run``. The container mounts only an
exchange folder of its own on the job directories' file system; each job directory is renamed into
it for its run (a symbolic link keeps its path working on the host) and back afterwards
(one file system: no copy). A job that crashes or times
out takes its container down; idle containers stop after ``idle_timeout`` and at exit."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hither.errors import JobTimeoutError
from hither.plugins.lifetime import close_at_exit

from hither.errors import ContainerError
from .engine import HasOptions, create_kwargs, remove_quietly
from .jobmount import crashed, has_outcome, job_binds
from .lifeline_host import LIFELINE_SOURCE, attach_lifeline, close_lifeline, wants_lifeline

if TYPE_CHECKING:  # pragma: no cover
    import docker


logger = logging.getLogger("hither_container.warm")

KILLED = 137  # what run() returns for a job stopped by kill()
LOOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_loop.py")
DEFAULT_IDLE = 60.0
_HEALTH_EVERY = 0.5  # seconds between checks that a warm container still runs


def exchange_root(base: str) -> str:
    """Where a warm container's exchange folder goes: the system's temp folder when it is on
    the file system of ``base`` (the job directories' folder), else ``base`` itself."""
    tmp = tempfile.gettempdir()
    try:
        if os.stat(tmp).st_dev == os.stat(base).st_dev:
            return tmp
    except OSError:
        pass
    return base


def _timed_out(job_dir: str) -> bool:
    """Whether the job's outcome is the runner's own timeout."""
    try:
        with open(os.path.join(job_dir, "error.json")) as f:
            return json.load(f).get("type_name") == "JobTimeoutError"
    except (OSError, ValueError, AttributeError):
        return False


class WarmContainer:
    """One long-lived container and its control folder; runs one job at a time."""

    def __init__(self, c: "docker.DockerClient", ref: str, base: str, runner: HasOptions,
                 idle: float) -> None:

        self.ref, self.base, self.idle = ref, base, idle
        # The container sees only this exchange folder (on the job directories' file system,
        # so a job directory moves in and back out by rename) and hither-core: never the rest
        # of the job base folder, which may be the system's /tmp.
        self.xdir = tempfile.mkdtemp(prefix="hither-warm-", dir=exchange_root(base))
        self.ctl = os.path.join(self.xdir, "ctl")
        os.mkdir(self.ctl)
        os.mkdir(os.path.join(self.xdir, "jobs"))
        shutil.copyfile(LOOP_SOURCE, os.path.join(self.ctl, "warm_loop.py"))
        shutil.copyfile(LIFELINE_SOURCE, os.path.join(self.ctl, "lifeline.py"))
        binds = job_binds(self.xdir, runner.options)
        # the loop outlives idle by a margin: the host stops it first when it is alive
        cmd = ["python3", os.path.join(self.ctl, "warm_loop.py"), self.ctl, str(idle + 30)]
        lifeline = wants_lifeline(runner.options)
        if lifeline:  # the loop ends when this process does (see lifeline.py)
            cmd.append("lifeline")
        kw = create_kwargs(ref, runner.options, binds, cmd, self.xdir, "warm")
        self.memory = runner.options.memory
        self.options_key = runner.options.model_dump_json()
        self._move_lock = threading.Lock()
        self.job_dir: Optional[str] = None  # the job's own path (as core knows it)
        self.inner: Optional[str] = None  # where it is while it runs here
        self.dead = False
        self.killed: Optional[str] = None
        self.line: Optional[Any] = None
        try:
            self.ct = c.containers.create(**kw)
            if lifeline:  # attached before the start, held until stop()
                self.line = attach_lifeline(c, self.ct)
            self.ct.start()
        except BaseException:
            if getattr(self, "ct", None) is not None:
                remove_quietly(self.ct)
            close_lifeline(self.line)
            shutil.rmtree(self.xdir, ignore_errors=True)
            raise
        self.last_used = time.monotonic()

    def _move_back(self) -> None:
        """Put the running job's directory back at its own path (idempotent)."""
        with self._move_lock:
            if self.inner and self.job_dir and os.path.exists(self.inner):
                if os.path.islink(self.job_dir):
                    os.unlink(self.job_dir)
                os.rename(self.inner, self.job_dir)
            self.inner = None

    def run(self, job_dir: str, timeout: Optional[float]) -> int:
        """Move ``job_dir`` into the exchange folder, hand it to the loop, wait for the
        answer, move it back."""
        jid = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        inner = os.path.join(self.xdir, "jobs", os.path.basename(job_dir))
        with self._move_lock:
            os.rename(job_dir, inner)
            self.job_dir, self.inner = job_dir, inner
            # the host keeps seeing the job directory at its own path meanwhile
            os.symlink(inner, job_dir)
        tmp = os.path.join(self.ctl, jid + ".tmp")
        with open(tmp, "w") as f:
            f.write(inner)
        os.rename(tmp, os.path.join(self.ctl, jid + ".job"))
        done = os.path.join(self.ctl, jid + ".done")
        started = time.monotonic()
        next_health = started + _HEALTH_EVERY
        pause = 0.0005
        try:
            while not os.path.exists(done):
                now = time.monotonic()
                if self.killed == job_dir:
                    return KILLED
                if timeout is not None and now - started > timeout:
                    self.stop()
                    raise JobTimeoutError(f"job {os.path.basename(job_dir)} in {self.ref} was "
                                          f"stopped after {timeout} s (job_timeout); its warm "
                                          "container was taken down")
                if now >= next_health:
                    next_health = now + _HEALTH_EVERY
                    try:
                        self.ct.reload()
                        status = self.ct.status
                    except Exception:  # noqa: BLE001 - removed under us
                        status = "gone"
                    if status != "running":
                        if self.killed == job_dir:
                            continue
                        raise self._died(job_dir)
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
            with open(done) as f:
                out = json.load(f)
            os.remove(done)
        finally:
            self._move_back()
            self.job_dir = None
            self.last_used = time.monotonic()
        code = out.get("exit_code")
        if code == 0 and has_outcome(job_dir):
            if _timed_out(job_dir):  # stopped by the runner's own watchdog
                self.stop()
            return 0
        # a crashed job takes its container down: the next job gets a fresh one
        sig = out.get("signal")
        logs = self._logs()
        self.stop()
        if has_outcome(job_dir) and not out.get("oom_killed"):
            return int(code) if code is not None else 128 + int(sig or 0)
        raise crashed(self.ref, job_dir, code if code is not None else 128 + int(sig or 0),
                      bool(out.get("oom_killed")), self.memory, logs)

    def _died(self, job_dir: str) -> Exception:
        state = self.ct.attrs.get("State", {})
        logs = self._logs()
        self.stop()
        return crashed(self.ref, job_dir, state.get("ExitCode"), bool(state.get("OOMKilled")),
                       self.memory, logs)

    def _logs(self) -> str:
        try:
            return self.ct.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - removed already
            return ""

    def stop(self) -> None:
        """Take the container down (SIGKILL and remove) and drop its control folder."""
        if self.dead:
            return
        self.dead = True
        try:
            self.ct.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("removing warm container %s: %s", self.ct.name, exc)
        close_lifeline(self.line)
        self._move_back()  # a job stopped mid-run keeps its directory (core reads it)
        shutil.rmtree(self.xdir, ignore_errors=True)


class WarmPool:
    """This process's warm containers, keyed by (image, job base folder, options)."""

    def __init__(self, c: "docker.DockerClient") -> None:
        self.c = c
        self.lock = threading.Lock()
        self.idle: Dict[Tuple[str, str, str], List[WarmContainer]] = {}
        self.busy: List[WarmContainer] = []
        self._reaper: Optional[threading.Thread] = None
        self._closed = threading.Event()

    def run(self, runner: HasOptions, ref: str, job_dir: str, timeout: Optional[float]) -> int:
        base = os.path.dirname(job_dir)
        idle = float(runner.options.extra.get("idle_timeout", DEFAULT_IDLE))
        key = (ref, base, runner.options.model_dump_json())
        with self.lock:
            free = [w for w in self.idle.get(key, []) if not w.dead]
            w = free.pop() if free else None
            self.idle[key] = free
        if w is None:
            try:
                w = WarmContainer(self.c, ref, base, runner, idle)
            except Exception as exc:  # noqa: BLE001
                raise ContainerError(f"could not start a warm container of {ref}: {exc}") from exc
            self._start_reaper()
        with self.lock:
            self.busy.append(w)
        try:
            return w.run(job_dir, timeout)
        finally:
            with self.lock:
                self.busy.remove(w)
                if not w.dead:
                    self.idle.setdefault(key, []).append(w)

    def kill(self, job_dir: str) -> None:
        with self.lock:
            targets = [w for w in self.busy if w.job_dir == job_dir]
        for w in targets:
            w.killed = job_dir
            w.stop()

    def _start_reaper(self) -> None:
        with self.lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="hither-warm-reaper",
                                                daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        while not self._closed.wait(1.0):
            now = time.monotonic()
            with self.lock:
                stale = [w for ws in self.idle.values() for w in ws if now - w.last_used > w.idle]
                for ws in self.idle.values():
                    ws[:] = [w for w in ws if w not in stale]
            for w in stale:
                logger.debug("warm container %s idle for %.0f s: stopping", w.ct.name, w.idle)
                w.stop()

    def close(self, options_key: Optional[str] = None) -> None:
        """Stop the warm containers of one options key (JSON of ContainerOptions), or every
        one of this process (also run at exit: hither.plugins.lifetime.close_at_exit)."""
        with self.lock:
            keys = [k for k in self.idle if options_key is None or k[2] == options_key]
            everything = [w for k in keys for w in self.idle.pop(k)]
            everything += [w for w in self.busy if options_key is None or w.options_key == options_key]
        for w in everything:
            w.stop()


_pool: Optional[WarmPool] = None
_pool_lock = threading.Lock()


def pool(c: "docker.DockerClient") -> WarmPool:
    """The process-wide warm pool (created on first use; closed at exit)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmPool(c)
            close_at_exit(_pool.close)  # at exit, after the handlers have stopped their jobs
            _chain_sigterm()
        return _pool


def close_all() -> None:
    """Stop every warm container of this process."""
    if _pool is not None:
        _pool.close()


def _chain_sigterm() -> None:
    """On SIGTERM, stop the warm containers before the default action (atexit does not run
    then). Only when the handler is the default one, and only from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_term(signum: int, frame: Any) -> None:
        close_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
