"""What stands between the network and the app: hosts and origins, body size and pace, admitted
work, security headers (ASGI middleware), and a uvicorn protocol that bounds connections and
header reads.

Each refusal is answered with a status and a one-line reason: 400 for an unknown ``Host``
(DNS rebinding), 403 for a cross-origin POST, 408 for a stalled upload, 413 for a body over the
limit, 503 with ``Retry-After`` when the analysis queue is full. A refused WebSocket is accepted
and closed at once with code 1008 (policy) so clients see the code, not an HTTP 403.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

POLICY_VIOLATION = 1008
#: Close code for "server busy, try again later" (RFC 6455 registry).
TRY_AGAIN_LATER = 1013
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"


def host_name(netloc: str) -> str:
    """The host of ``host[:port]`` or ``[v6]:port``, lower case, without brackets ("" if malformed)."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


async def close_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    """Accept a WebSocket and close it at once with ``code``: browsers see the code, not a 403."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code,
                    "reason": reason.encode()[:120].decode(errors="ignore")})  # the protocol allows 123 bytes


class HostGuard:
    """Only allow-listed ``Host`` headers; no cross-origin POSTs or WebSockets.

    A DNS-rebinding page reaches the server under the attacker's host name, so checking Origin
    against Host is not enough: the Host itself must be one of ``allowed_hosts`` (``*`` allows
    any). A request with an ``Origin`` header (every browser POST and WebSocket) must come from
    the same host and port.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(HTTP status, reason) when the request is refused."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if ANY_HOST not in self.allowed and host_name(host) not in self.allowed:
            return 400, f"unknown host {host!r}: this server answers to {', '.join(sorted(self.allowed))} (--allow-host)"
        origin = headers.get("origin")
        unsafe = scope["type"] == "websocket" or scope["method"] not in ("GET", "HEAD", "OPTIONS")
        if unsafe and origin is not None and origin.partition("://")[2].rstrip("/").lower() != host.lower():
            return 403, f"cross-origin request from {origin!r} refused"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await close_websocket(receive, send, POLICY_VIOLATION, refusal[1])
        else:
            await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)


class BodyLimit:
    """413 as soon as a request body passes ``max_bytes``; 408 when it stalls or drags on.

    A larger ``Content-Length`` is refused before reading; otherwise bytes are counted as they
    stream in and reading stops at the limit, so an upload never grows past it in memory or on
    disk. Each read of the body must bring data within ``idle_timeout_s`` and the whole body
    must arrive within ``total_timeout_s``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, idle_timeout_s: float, total_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"upload too large: the limit is {self.max_bytes / 2**20:g} MB (--max-upload-mb)"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout_s
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # later reads wait for the disconnect: no deadline
                return await receive()
            remaining = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(min(self.idle_timeout_s, remaining), 0.001))
            except TimeoutError:
                reason = (f"no data for {self.idle_timeout_s:g} s" if remaining > self.idle_timeout_s
                          else f"not complete after {self.total_timeout_s:g} s")
                raise HTTPException(408, f"upload too slow: {reason}") from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, detail)
            body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)


class WorkLimit:
    """Admit at most ``max_requests`` POST requests (running or waiting for a worker).

    Checked before the body is read, so a refused upload costs neither memory nor disk: it gets
    503 with ``Retry-After``.
    """

    def __init__(self, app: ASGIApp, max_requests: int, retry_after_s: int = 2) -> None:
        self.app = app
        self.max_requests = max_requests
        self.retry_after_s = retry_after_s
        self.active = 0  # changed on the event loop only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_requests:
            detail = f"server busy: {self.active} analyses running or queued; retry in {self.retry_after_s} s"
            response = JSONResponse({"detail": detail}, status_code=503,
                                    headers={"Retry-After": str(self.retry_after_s)})
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class SecurityHeaders:
    """Add ``headers`` (Content-Security-Policy, nosniff, ...) to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in self.headers.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections that send no complete request head within
    ``header_timeout_s`` (slowloris), and holding at most ``max_connections`` open ones.

    At the cap, a new connection closes the one that has waited longest for a request head (a
    slowloris socket or an idle keep-alive) instead of being turned away itself: a client that
    sends its request at once is served however many sockets an attacker holds half-open, and
    only when every other connection is busy with a request or a stream is the new one closed.
    """

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()
            if len(self.connections) > max_connections and not self._evict_one():
                transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_deadline()

        def _arm_head_deadline(self) -> None:
            self._armed_cycle, self._armed_at = self.cycle, self.loop.time()
            self.loop.call_later(header_timeout_s, self._head_deadline, self.cycle)

        def _waiting_for_head(self) -> bool:
            """No request since the deadline was armed, not upgraded to a WebSocket, still open."""
            return (self.cycle is self._armed_cycle and self.transport.get_protocol() is self
                    and not self.transport.is_closing())

        def _head_deadline(self, cycle_when_armed: Any) -> None:
            if self.cycle is cycle_when_armed and self._waiting_for_head():
                self.transport.close()

        def _evict_one(self) -> bool:
            """Close the other connection waiting longest for a request head; False when there is none."""
            waiting = [c for c in self.connections
                       if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting_for_head()]
            if not waiting:
                return False
            min(waiting, key=lambda c: c._armed_at).transport.close()
            return True

    return GuardedH11Protocol
