"""The outermost ASGI layer of the labeling app: refusals that must come before any body is read,
and the security headers on every response the app sends, errors included.

Order per request: an ``/api/TOKEN/...`` request with an unknown token gets 403 at once; a declared
``Content-Length`` over the cap gets 413 at once; otherwise the body is counted as it streams in
(chunked bodies declare no length), and the first chunk past the cap ends the request with 413:
the app's own reply is dropped and the rest of the body is never read into memory.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNKNOWN_TOKEN_MESSAGE = "unknown annotator token: use the link you were given"
API_PREFIX = "/api/"
IMAGES_SEGMENT = "/images/"


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes the cap (whatever the app makes of it, the
    guard answers 413)."""


class RequestGuard:
    def __init__(self, app: ASGIApp, *, is_known_token: Callable[[str], bool], max_body_bytes: int,
                 headers: Mapping[str, str]):
        self.app = app
        self.is_known_token = is_known_token
        self.max_body_bytes = max_body_bytes
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = self._with_headers(send, scope["path"])
        token = api_token(scope["path"])
        if token is not None and not self.is_known_token(token):
            return await reply(send, 403, UNKNOWN_TOKEN_MESSAGE)
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await reply(send, 413, self.too_large_message)
        await self._call_capped(scope, receive, send)

    @property
    def too_large_message(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes"

    async def _call_capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        received, exceeded, started = 0, False, False

        async def capped_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not read: ours replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, send_unless_exceeded)
        except BodyTooLarge:
            if started:
                raise
        if exceeded and not started:
            await reply(send, 413, self.too_large_message)

    def _with_headers(self, send: Send, path: str) -> Send:
        headers = dict(self.headers)
        if path.startswith(API_PREFIX) and IMAGES_SEGMENT not in path:
            headers["Cache-Control"] = "no-store"  # progress and items change with every vote

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        return send_with_headers


def api_token(path: str) -> str | None:
    """The ``TOKEN`` of an ``/api/TOKEN/...`` path (None for other paths)."""
    if not path.startswith(API_PREFIX):
        return None
    return path[len(API_PREFIX):].partition("/")[0]


async def reply(send: Send, status: int, detail: str) -> None:
    """A JSON ``{"detail": ...}`` refusal, like the app's own."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
