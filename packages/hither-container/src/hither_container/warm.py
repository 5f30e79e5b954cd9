"""Warm Docker containers: one long-lived container per (image, job base folder, options)
and concurrent job, fed job directories over a control channel (``warm_loop.py`` runs
inside), so a job costs a fork instead of a ``docker run``.

What a job in a warm container can reach is only its own: the container mounts an exchange
folder's ``jobs`` (read-write: the running job's directory is renamed into it, a symbolic
link keeps its path working on the host, and back afterwards; then everything else there is
removed) and ``ctl`` (read-only: the loop, the lifeline and the runtime zips the host
writes). Commands and answers go over two FIFOs unlinked once the loop holds them; each job
writes its stdout and stderr to a file of its own, read back bounded. The loop kills every
process a job leaves and wipes /tmp, /var/tmp and /dev/shm before the next. A job that
crashes or times out takes its container down; idle containers stop after ``idle_timeout``
and at exit."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import select
import shutil
import signal
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from hither.errors import ContainerError, JobTimeoutError
from hither.plugins.lifetime import close_at_exit

from .engine import HasOptions, create_kwargs, engine_error, is_connection_error
from .jobmount import crashed, has_outcome, shared_binds
from .lifeline_host import LIFELINE_SOURCE, attach_lifeline, close_lifeline, wants_lifeline

if TYPE_CHECKING:  # pragma: no cover
    import docker


logger = logging.getLogger("hither_container.warm")

KILLED = 137  # what run() returns for a job stopped by kill()
LOOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_loop.py")
DEFAULT_IDLE = 60.0
START_TIMEOUT = 120.0  # seconds for a new warm container's loop to say it is ready
LOG_TAIL = 64 * 1024  # bytes of a crashed job's own output read back
_HEALTH_EVERY = 0.5  # seconds between checks that a warm container still runs
MOVED = "moved-job"  # in the exchange folder (not mounted): the path of the job moved in


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


def install_runtime(ctl: str, job_dir: str) -> str:
    """Put the job directory's runtime (runner.py, a zip) into the control folder as
    ``runtime-<sha1>.zip`` (once per content); returns the sha1."""
    with open(os.path.join(job_dir, "runner.py"), "rb") as f:
        data = f.read()
    key = hashlib.sha1(data).hexdigest()
    path = os.path.join(ctl, f"runtime-{key}.zip")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(path + ".tmp", 0o444)
        os.rename(path + ".tmp", path)
    return key


def read_tail(path: str, limit: int = LOG_TAIL) -> str:
    """The last ``limit`` bytes of a file (empty if it is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _timed_out(job_dir: str) -> bool:
    """Whether the job's outcome is the runner's own timeout."""
    try:
        with open(os.path.join(job_dir, "error.json")) as f:
            return json.load(f).get("type_name") == "JobTimeoutError"
    except (OSError, ValueError, AttributeError):
        return False


def _empty(folder: str) -> None:
    """Remove everything in ``folder`` (what a job left beside its own directory)."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, _ in os.walk(path):  # a job may have locked its folders
                for d in dirs:
                    try:
                        os.chmod(os.path.join(root, d), 0o700)
                    except OSError:
                        pass
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


class WarmContainer:
    """One long-lived container and its control channel; runs one job at a time."""

    def __init__(self, c: "docker.DockerClient", ref: str, base: str, runner: HasOptions,
                 idle: float) -> None:
        self.ref, self.base, self.idle = ref, base, idle
        # on the job directories' file system: a job directory moves in and back by rename
        self.xdir = tempfile.mkdtemp(prefix="hither-warm-", dir=exchange_root(base))
        self.ctl = os.path.join(self.xdir, "ctl")
        self.jobs = os.path.join(self.xdir, "jobs")
        os.mkdir(self.ctl)
        os.mkdir(self.jobs)
        shutil.copyfile(LOOP_SOURCE, os.path.join(self.ctl, "warm_loop.py"))
        shutil.copyfile(LIFELINE_SOURCE, os.path.join(self.ctl, "lifeline.py"))
        for name in ("cmd", "ans"):
            os.mkfifo(os.path.join(self.ctl, name), 0o600)
        self.ans_fd = os.open(os.path.join(self.ctl, "ans"), os.O_RDONLY | os.O_NONBLOCK)
        self.cmd_fd = -1
        self._buf = b""
        binds = [(self.jobs, self.jobs, "rw"), (self.ctl, self.ctl, "ro")]
        binds += shared_binds(runner.options)
        # the loop outlives idle by a margin: the host stops it first when it is alive
        cmd = ["python3", os.path.join(self.ctl, "warm_loop.py"), self.ctl, str(idle + 30)]
        lifeline = wants_lifeline(runner.options)
        if lifeline:  # the loop ends when this process does (see lifeline.py)
            cmd.append("lifeline")
        kw = create_kwargs(ref, runner.options, binds, cmd, self.jobs, "warm")
        self.memory = runner.options.memory
        self.options_key = runner.options.model_dump_json()
        self._move_lock = threading.Lock()
        self.job_dir: Optional[str] = None  # the job's own path (as core knows it)
        self.inner: Optional[str] = None  # where it is while it runs here
        self.dead = False
        self.killed: Optional[str] = None
        self.line: Optional[Any] = None
        self.ct: Any = None
        self.log: Optional[str] = None  # the running job's own output
        try:
            self.ct = c.containers.create(**kw)
            if lifeline:  # attached before the start, held until stop()
                self.line = attach_lifeline(c, self.ct)
            self.ct.start()
            self._answer(None, START_TIMEOUT, "start")
            self.cmd_fd = os.open(os.path.join(self.ctl, "cmd"), os.O_WRONLY)
            for name in ("cmd", "ans"):  # from now on no path leads to the channel
                os.unlink(os.path.join(self.ctl, name))
        except BaseException:
            self.stop()
            raise
        self.last_used = time.monotonic()

    def _answer(self, job_dir: Optional[str], timeout: Optional[float],
                what: str) -> Dict[str, Any]:
        """The loop's next answer line; raises when the container dies or time runs out."""
        started = time.monotonic()
        while b"\n" not in self._buf:
            wait = _HEALTH_EVERY
            if timeout is not None:
                left = timeout - (time.monotonic() - started)
                if left <= 0:
                    self.stop()
                    if job_dir is None:
                        raise ContainerError(f"the warm container of {self.ref} did not start "
                                             f"within {timeout} s")
                    raise JobTimeoutError(f"job {os.path.basename(job_dir)} in {self.ref} was "
                                          f"stopped after {timeout} s (job_timeout); its warm "
                                          "container was taken down")
                wait = min(wait, left)
            if self.killed is not None and self.killed == job_dir:
                raise _Killed()
            try:
                ready, _, _ = select.select([self.ans_fd], [], [], wait)
                data = os.read(self.ans_fd, 65536) if ready else None
            except (OSError, ValueError):  # closed by stop() in another thread
                data = b""
            if data:
                self._buf += data
            elif data == b"" or not self._running():  # EOF: the loop is gone
                if self.killed is not None and self.killed == job_dir:
                    raise _Killed()
                raise self._died(job_dir, what)
        line, self._buf = self._buf.split(b"\n", 1)
        return dict(json.loads(line.decode("utf-8")))

    def _running(self) -> bool:
        if self.dead:
            return False
        try:
            self.ct.reload()
            return bool(self.ct.status == "running")
        except Exception as exc:  # noqa: BLE001 - removed under us, or the engine is gone
            if is_connection_error(exc):
                raise engine_error(exc, f"lost the Docker Engine while running {self.ref}") from exc
            return False

    def _move_back(self) -> None:
        """Put the running job's directory back at its own path (idempotent), then empty the
        exchange folder of whatever else the job left there."""
        with self._move_lock:
            if self.inner and self.job_dir and os.path.exists(self.inner):
                if os.path.islink(self.job_dir):
                    os.unlink(self.job_dir)
                os.rename(self.inner, self.job_dir)
            self.inner = None
            if os.path.isdir(self.jobs):
                _empty(self.jobs)
            try:
                os.unlink(os.path.join(self.xdir, MOVED))
            except OSError:
                pass

    def run(self, job_dir: str, timeout: Optional[float]) -> int:
        """Move ``job_dir`` into the exchange folder, hand it to the loop, wait for the
        answer, move it back."""
        jid = uuid.uuid4().hex
        inner = os.path.join(self.jobs, os.path.basename(job_dir))
        log = self.log = os.path.join(self.jobs, f".{jid}.log")
        runtime = install_runtime(self.ctl, job_dir)
        with self._move_lock:
            with open(os.path.join(self.xdir, MOVED), "w") as f:
                f.write(job_dir)  # for the sweep, should this process be killed meanwhile
            os.rename(job_dir, inner)
            self.job_dir, self.inner = job_dir, inner
            # the host keeps seeing the job directory at its own path meanwhile
            os.symlink(inner, job_dir)
        logs = ""
        try:
            os.write(self.cmd_fd, (json.dumps({"id": jid, "job": inner, "runtime": runtime,
                                               "log": log}) + "\n").encode("utf-8"))
            out = self._answer(job_dir, timeout, "job")
            while out.get("id") != jid:
                out = self._answer(job_dir, timeout, "job")
        except _Killed:
            return KILLED
        except BaseException:
            logs = read_tail(log)
            raise
        finally:
            if not logs:
                logs = read_tail(log)
            self.log = None
            self._move_back()
            self.job_dir = None
            if self.dead:  # stopped meanwhile: the answer end is this thread's to close
                self._close_fds(running=False)
            self.last_used = time.monotonic()
        code = out.get("exit_code")
        if code == 0 and has_outcome(job_dir):
            if _timed_out(job_dir):  # stopped by the runner's own watchdog
                self.stop()
            return 0
        # a crashed job takes its container down: the next job gets a fresh one
        sig = out.get("signal")
        self.stop()
        if has_outcome(job_dir) and not out.get("oom_killed"):
            return int(code) if code is not None else 128 + int(sig or 0)
        raise crashed(self.ref, job_dir, code if code is not None else 128 + int(sig or 0),
                      bool(out.get("oom_killed")), self.memory, logs)

    def _died(self, job_dir: Optional[str], what: str) -> Exception:
        try:
            self.ct.reload()
            state = self.ct.attrs.get("State", {})
        except Exception as exc:  # noqa: BLE001 - removed already, or the engine is gone
            if is_connection_error(exc):  # (which also cut the lifeline: the loop ended)
                self.stop()
                return engine_error(exc, f"lost the Docker Engine while running {self.ref}")
            state = {}
        logs = self._logs()
        self.stop()
        if job_dir is None:
            return ContainerError(f"the warm container of {self.ref} ended at its {what} "
                                  f"(exit code {state.get('ExitCode')}); its last output:\n{logs}")
        job_log = read_tail(self.log) if self.log else ""
        return crashed(self.ref, job_dir, state.get("ExitCode"), bool(state.get("OOMKilled")),
                       self.memory, job_log + logs)

    def _logs(self) -> str:
        """The loop's own last output (the container log holds no job's output), bounded."""
        try:
            return str(self.ct.logs(stdout=True, stderr=True, tail=50).decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - removed already
            return ""

    def stop(self) -> None:
        """Take the container down (SIGKILL and remove) and drop its exchange folder."""
        if self.dead:
            return
        self.dead = True
        if self.ct is not None:
            try:
                self.ct.remove(force=True)
            except Exception as exc:  # noqa: BLE001 - already gone
                logger.debug("removing warm container %s: %s", self.ct.name, exc)
        close_lifeline(self.line)
        self._close_fds(running=self.job_dir is not None)
        self._move_back()  # a job stopped mid-run keeps its directory (core reads it)
        shutil.rmtree(self.xdir, ignore_errors=True)


    def _close_fds(self, running: bool) -> None:
        """Close the channel; while a job runs, the answer end stays for its thread (which
        wakes at the EOF the container's removal gives, and closes it)."""
        fds = [self.cmd_fd] if running else [self.cmd_fd, self.ans_fd]
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.cmd_fd = -1
        if not running:
            self.ans_fd = -1


class _Killed(Exception):
    """The running job was stopped by ``kill``."""


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
