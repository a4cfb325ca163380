"""The ASGI layer every HTTP request passes first: request id, bearer auth, body-size limit, a generic 500
for anything unexpected, and one JSON access-log line per request.

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware so the body can be counted as it streams in
(a request without Content-Length is cut off at the limit, not after it has been read whole) and so an
error inside the app still gets our 500 body and a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import traceback
import uuid
from datetime import datetime, timezone

from arenapref.serve.settings import ServeSettings

log = logging.getLogger("arenapref.serve")

# Paths a browser or a load balancer reaches without a token; none of them runs the model.
OPEN_PATHS = frozenset({"/", "/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/favicon.ico"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def log_event(level: int, event: str, **fields) -> None:
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event, **fields}
    log.log(level, json.dumps(record, default=str))


def error_body(status: int, message: str, type: str, request_id: str, limit: str | None = None) -> bytes:
    error = {"message": message, "type": type, "code": status}
    if limit:
        error["limit"] = limit
    return json.dumps({"error": error, "request_id": request_id}).encode()


class InFlight:
    """HTTP requests between their first byte and their last log line (read by the micro-batcher)."""

    count = 0

    def __call__(self) -> int:
        return self.count


class _BodyTooLarge(Exception):
    pass


class Gate:
    def __init__(self, app, settings: ServeSettings, in_flight: "InFlight | None" = None):
        self.app = app
        self.settings = settings
        token = settings.token.get_secret_value() if settings.token else None
        self._expected = f"Bearer {token}".encode() if token else None
        self.in_flight = in_flight if in_flight is not None else InFlight()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["pairs"] = 0
        start = time.perf_counter()
        status = None
        self.in_flight.count += 1

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode()),
                                                  (b"x-content-type-options", b"nosniff")]}
            await send(message)

        async def answer(code: int, message: str, type: str, limit: str | None = None, extra_headers=()):
            body = error_body(code, message, type, request_id, limit)
            await send_with_id({"type": "http.response.start", "status": code, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]})
            await send_with_id({"type": "http.response.body", "body": body})

        try:
            if self._expected and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
                await answer(401, "missing or invalid bearer token: send the header `Authorization: Bearer <token>`",
                             "authentication_error", extra_headers=[(b"www-authenticate", b"Bearer")])
            elif scope["method"] in BODY_METHODS:
                try:
                    body = await asyncio.wait_for(self._read_body(headers, receive), self.settings.request_timeout_s)
                except _BodyTooLarge:
                    await answer(413, f"request body is larger than {self.settings.max_body_bytes} bytes "
                                      "(max_body_bytes)", "request_too_large", "max_body_bytes")
                except TimeoutError:
                    await answer(408, f"request body not received within {self.settings.request_timeout_s:g} s "
                                      "(request_timeout_s)", "timeout", "request_timeout_s")
                else:
                    await self.app(scope, _replay(body, receive), send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as e:
            log_event(logging.ERROR, "error", request_id=request_id, method=scope["method"], path=scope["path"],
                      error=type(e).__name__, traceback=traceback.format_exc())
            if status is None:
                await answer(500, f"internal error; quote request id {request_id} when reporting it", "internal_error")
        finally:
            self.in_flight.count -= 1
            # No bodies, no query strings (the page's links carry texts there), no headers (the token).
            log_event(logging.INFO, "request", request_id=request_id, method=scope["method"], path=scope["path"],
                      status=status, latency_ms=round((time.perf_counter() - start) * 1000, 2),
                      pairs=state.get("pairs", 0))

    def _authorized(self, headers: dict) -> bool:
        return hmac.compare_digest(headers.get(b"authorization", b""), self._expected)

    async def _read_body(self, headers: dict, receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            if len(body) > limit:
                raise _BodyTooLarge
            if not message.get("more_body", False):
                break
        return bytes(body)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server's own receive does

    return replay
