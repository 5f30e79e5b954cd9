"""Who may talk to the monitor: the token for non-loopback hosts, the Host check, same-origin writes.

- Bound to a loopback address, the monitor answers requests whose ``Host`` is a loopback
  name only (a page of another site cannot reach it through DNS rebinding).
- Bound to any other address, every request needs the token printed at start: a first
  visit with ``?token=...`` sets an HttpOnly cookie and redirects to the same URL without
  it; scripts send ``Authorization: Bearer <token>``.
- A write (POST: cancel) needs the header ``X-Hither-Monitor: 1``, which a cross-site form
  cannot set.
"""
from __future__ import annotations

import hmac
import ipaddress
from typing import Optional
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "hither_monitor_token"
WRITE_HEADER = "x-hither-monitor"
# the page runs only its own scripts and cannot be framed by another site
_SECURITY_HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
                     (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                     (b"referrer-policy", b"no-referrer")]
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without the port (``[::1]:8765`` is ``[::1]``)."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


class Guard:
    """ASGI middleware: refuse what the rules above refuse; ``token`` None means loopback mode."""

    def __init__(self, app: ASGIApp, token: Optional[str]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._check(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> Optional[Response]:
        if self.token is None:
            if not is_loopback(host_name(request.headers.get("host", ""))):
                return PlainTextResponse("refused: this monitor answers on localhost only", status_code=403)
        else:
            given = request.query_params.get("token")
            if given is not None:
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    return PlainTextResponse("refused: wrong token", status_code=401)
                rest = urlencode([(k, v) for k, v in parse_qsl(request.url.query) if k != "token"])
                target = request.url.path + ("?" + rest if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
                return response
            if not self._has_token(request):
                return PlainTextResponse("refused: this monitor needs its token (printed when it started): "
                                         "open the page once with ?token=TOKEN", status_code=401)
        if request.method not in ("GET", "HEAD") and request.headers.get(WRITE_HEADER) != "1":
            return PlainTextResponse(f"refused: a write needs the header {WRITE_HEADER}: 1", status_code=403)
        return None

    def _has_token(self, request: Request) -> bool:
        assert self.token is not None
        candidates = [request.cookies.get(COOKIE, "")]
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        return any(c and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates)
