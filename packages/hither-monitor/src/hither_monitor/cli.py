"""The ``hither-monitor`` command: ``serve`` the web page over the event log (and the bus).

::

    hither-monitor serve                          # http://127.0.0.1:8765, the default log
    hither-monitor serve --db run.sqlite3 --port 9000
    hither-monitor serve --mongo-url mongodb://127.0.0.1:27017 --database hither
    hither-monitor serve --host 0.0.0.0           # prints a token; the page needs it

Errors are one or two lines on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import secrets
import socket
import sys
from typing import List, Optional

from .__about__ import __version__

logger = logging.getLogger("hither_monitor")
DEFAULT_PORT = 8765


class CliError(Exception):
    """What went wrong and what to do, for stderr."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hither-monitor",
                                     description="A live web page over hither's job event log and job bus.")
    parser.add_argument("--version", action="version", version=f"hither-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve the page (default http://127.0.0.1:8765)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s; 0: any free)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default %(default)s); any non-loopback address needs the token")
    serve.add_argument("--db", default=None, help="the event log (default $HITHER_MONITOR_DB, else the "
                                                  "user cache's hither/monitor.sqlite3)")
    serve.add_argument("--mongo-url", default=os.environ.get("HITHER_REMOTE_MONGO_URL"),
                       help="MongoDB of hither-remote's job bus (default $HITHER_REMOTE_MONGO_URL; none: no bus view)")
    serve.add_argument("--database", default=os.environ.get("HITHER_REMOTE_DATABASE", "hither"),
                       help="database of the job bus (default $HITHER_REMOTE_DATABASE or %(default)s)")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def _say(line: str) -> None:
    """A line for the user on stderr (the command's output, not a log record)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound (port 0: a free one), or why it cannot be."""
    if not 0 <= port <= 65535:
        raise CliError(f"--port must be 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        return s
    except socket.gaierror:
        s.close()
        raise CliError(f"--host {host!r} is not an address of this machine") from None
    except OSError as exc:
        s.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} on {host} is in use: pick another with --port (0: any free)") from None
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(args: argparse.Namespace) -> None:
    """Open the log (and the bus), then run the server until Ctrl-C."""
    from .busview import BusUnavailable, BusView, open_bus
    from .eventlog import EventLog, LogError
    from .guard import is_loopback

    try:
        log = EventLog(args.db)  # None: hither-core's default_log_path()
    except LogError as exc:
        raise CliError(str(exc)) from None
    bus = None
    if args.mongo_url:
        try:
            bus = BusView(open_bus(args.mongo_url, args.database))
        except BusUnavailable as exc:
            raise CliError(str(exc)) from None
    try:
        sock = _listen(args.host, args.port)
    except CliError:
        if bus is not None:
            bus.close()
        raise
    token = None if is_loopback(args.host) else secrets.token_urlsafe(24)
    import uvicorn

    from .app import create_app

    app = create_app(log, bus, token)
    config = uvicorn.Config(app, log_level=args.log_level,
                            access_log=False, server_header=False, lifespan="off")
    server = uvicorn.Server(config)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/"
    _say(f"hither-monitor {__version__}: {log.path}" + (f" and the bus in {args.database}" if bus else ""))
    if token is not None:
        _say(f"open {url}?token={token}  (the token is needed: the monitor listens beyond this machine)")
    else:
        _say(f"open {url}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if bus is not None:
            bus.close()


def main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    try:
        serve(args)
    except CliError as exc:
        _say(f"hither-monitor: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover - ``python -m hither_monitor.cli``
    main()
