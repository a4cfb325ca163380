"""The ASGI layer every HTTP request passes first: request id, bearer auth, the JSON content type, the body's
size and time limits, a generic 500 for anything unexpected, and one JSON access-log line per request.

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
OPEN_PREFIXES = ("/docs/",)  # the docs' own scripts and styles
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


class SlowClients:
    """Connections cut off because a client was too slow: its headers (counted by serve.server's protocol) or
    its body (counted by the Gate). Shown by /healthz."""

    def __init__(self):
        self.header_timeouts = 0  # a request started but its line and headers did not arrive in time
        self.idle_closed = 0  # a new connection sent nothing within the header timeout
        self.body_timeouts = 0

    def as_dict(self) -> dict:
        return {"header_timeouts": self.header_timeouts, "idle_connections_closed": self.idle_closed,
                "body_timeouts": self.body_timeouts}


def is_json(content_type: bytes) -> bool:
    """application/json or application/<anything>+json, with or without parameters (FastAPI parses those as JSON)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class _BodyTooLarge(Exception):
    pass


class Gate:
    """`json_paths`: where a POST body must be JSON. A request that sends another Content-Type, or none, answers
    415 naming the expected one (FastAPI would answer 422 "Input should be a valid dictionary": it parses only
    JSON content types as JSON, and requiring one also keeps browsers' cross-site "simple" requests out)."""

    def __init__(self, app, settings: ServeSettings, in_flight: "InFlight | None" = None,
                 slow_clients: SlowClients | None = None, json_paths: frozenset = frozenset()):
        self.app = app
        self.settings = settings
        token = settings.token.get_secret_value() if settings.token else None
        self._token = token.encode() if token else None
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self.slow_clients = slow_clients if slow_clients is not None else SlowClients()
        self.json_paths = json_paths

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

        # The rest of an unread body is not worth waiting for: close the connection after answering.
        close = [(b"connection", b"close")]
        path = scope["path"]
        try:
            if self._token and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES) \
                    and not self._authorized(headers):
                await answer(401, "missing or invalid bearer token: send the header `Authorization: Bearer <token>`",
                             "authentication_error", extra_headers=[(b"www-authenticate", b"Bearer")])
            elif scope["method"] == "POST" and path in self.json_paths and not is_json(headers.get(b"content-type", b"")):
                given = headers.get(b"content-type", b"").decode("latin-1")[:100]
                await answer(415, "the body must be JSON: send the header `Content-Type: application/json` (got "
                                  + (f"`{given}`)" if given else "no Content-Type)"), "invalid_request_error",
                             extra_headers=close)
            elif scope["method"] in BODY_METHODS:
                timeout = self.settings.body_timeout
                limit = "request_timeout_s" if self.settings.body_timeout_s is None else "body_timeout_s"
                try:
                    body = await asyncio.wait_for(self._read_body(headers, receive), timeout)
                except _BodyTooLarge:
                    await answer(413, f"request body is larger than {self.settings.max_body_bytes} bytes "
                                      "(max_body_bytes)", "request_too_large", "max_body_bytes", extra_headers=close)
                except TimeoutError:
                    self.slow_clients.body_timeouts += 1
                    await answer(408, f"request body not received within {timeout:g} s ({limit})", "timeout", limit,
                                 extra_headers=close)
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
        # RFC 9110 section 11.1: the scheme is case-insensitive ("bearer" is "Bearer"); then one or more spaces.
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(b" "), self._token)

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
